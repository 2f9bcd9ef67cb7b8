// Softmax and logsumexp as the tensor IR spells them. lowerLayer expands softmax(k: x) into
//   M[w] = max(k1: x[k := k1]),  S[w] = sum(k2: exp(x[k := k2] - M[w])),  exp(x - M[w]) / S[w]
// and hoistReductions stores M and S as temporaries; a hand-written softmax in that form is
// the same function. Autodiff uses the match to give softmax its own adjoint,
//   dx[k] = s[k] * (g[k] - sum(k': g[k'] * s[k'])),
// which reads the stored probabilities instead of recomputing exp along every path through
// M and S (whose adjoint through the max is zero: softmax does not depend on the shift).
#pragma once

#include "compiler/TensorProgram.h"

#include <optional>

namespace enc::ir {

struct SoftmaxForm {
  Expr logits;   // x, over the variables of the place where the quotient was found
  IndexVar over; // k: the variable the probabilities sum to one along
};

// `quotient` (an expression exp(x - M[..]) / S[..] found at a place whose variables are
// `scope`) as softmax along one of those variables, where M and S are temporaries of
// `program` defined (once) as above and their reads do not depend on k. nullopt otherwise.
std::optional<SoftmaxForm> matchSoftmax(const Expr &quotient, const std::vector<IndexVar> &scope,
                                        const Program &program);

// logsumexp(k: x), as lowerLayer expands it: M[..] + log(S[..]) with M and S as above. Its
// adjoint sends adj * exp(x - M) / S to each x[k]: nothing through M's select, no second pass
// for the sum. `k` names the variable the logits are returned over (a name the caller keeps
// free); nullopt where `sum` is not that form.
struct LogSumExpForm {
  Expr logits;  // x with its reduction variable named k
  Expr extent;  // k's extent
  Expr maxRead; // M[..] as read at the place of the sum
  Expr sumRead; // S[..]
};
std::optional<LogSumExpForm> matchLogSumExp(const Expr &sum, const std::string &k, const Program &program);

} // namespace enc::ir
