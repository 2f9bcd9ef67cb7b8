// Networks: a layer with sub-layers becomes one ordinary layer with every sub-layer inlined.
//
//   layer Block(C: int) {                          layer Block(C: int) {
//     conv = Conv2d(in_channels=C, ...)              param conv.weight[64, 64, 3, 3] = ...
//     bn = SyncBatchNorm(num_features=C)             param bn.weight[64] = ones ...
//     forward(X: [B, C, H, W]) -> Y {       ==>      forward(X: [B, 64, H, W]) -> Y: [B, 64, H, W] {
//       Y = relu(bn(conv(X))) + X                      conv.Y[b, o, h, w]: [B, 64, H, W] = sum(c, kh, kw: ...)
//     }                                                bn.Z[b, c, l_0, l_1] = ...
//   }                                                  Y[_i0, _i1, _i2, _i3]: [B, 64, H, W] = relu(...) + X[...]
//
// Expansion needs the hyper-parameters' values (a repetition count, a sub-layer's channels), so it
// runs when a network is instantiated, and the result is checked by sema like any layer. In it:
// - every hyper-parameter is its value, and every shape is in a canonical form of the input sizes
//   (linear parts collected, `(H + 2 - 2 - 1) // 1 + 1` is `H`), so the dimensions of tensors that
//   meet compare equal as sema compares them, by their text;
// - parameters and buffers are named by their path, as torch's state_dict: `layer1.0.bn1.running_mean`;
//   a sub-layer called twice shares them;
// - a sub-layer's input declared `[B, C, L...]` takes the caller's rank: each index over L becomes
//   one index per collapsed dimension (`l_0, l_1`), so nothing is reshaped;
// - whole-tensor statements (`Y = relu(F) + X`, no indices on the left) become element-wise ones
//   over fresh indices `_i0, _i1, ...`.
#pragma once

#include "compiler/IR.h"
#include "dsl/AST.h"
#include "dsl/Sema.h"

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace enc {

// The most statements a network expands to: more is an error at the statement past the limit.
// Every statement is compiled (time and memory grow with their count), so a count far past any
// real network is refused before it is expanded.
constexpr size_t kMaxNetworkStatements = 50000;

// A network with its sub-layers inlined: one checked layer. Its source locations point into the
// files of the libraries the network and its sub-layers come from, which must outlive it.
struct ExpandedNetwork {
  ast::Module module; // one layer
  LayerSymbols symbols;
};

// Finds a layer a network names as a sub-layer (its own file first, then the shipped layers).
using LayerLookup = std::function<const LayerSymbols *(const std::string &name)>;

// Expands `network` with the values of its hyper-parameters (as resolveHyperParams gives them, plus
// `training`). Throws CompileError with located diagnostics: at the call or declaration at fault,
// with notes on the sub-layer's declaration.
std::shared_ptr<const ExpandedNetwork> expandNetwork(const LayerSymbols &network,
                                                     const std::map<std::string, ir::Expr> &hyperParams,
                                                     const LayerLookup &lookup);

} // namespace enc
