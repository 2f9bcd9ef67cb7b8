// Gradient buckets for data-parallel training (see GradientBuckets.h).
#include "compiler/GradientBuckets.h"

#include "support/InternalError.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

namespace enc::ir {

namespace {

// The elements of `tensor`; its shape must be constant by now.
int64_t elementsOf(const LoopProgram &p, const std::string &tensor) {
  const TensorDecl *t = p.tensors.tensor(tensor);
  ENC_INTERNAL_ASSERT(t, "bucketGradients: gradient '{}' is not a tensor of the program", tensor);
  int64_t n = 1;
  for (const Expr &d : t->shape) {
    int64_t extent = 0;
    ENC_INTERNAL_ASSERT(isConst(d, &extent), "bucketGradients: gradient '{}' has a symbolic shape", tensor);
    n *= extent;
  }
  return n;
}

size_t storedBytes(const LoopProgram &p, const std::string &tensor) {
  return static_cast<size_t>(elementsOf(p, tensor) * elemTypeBytes(p.types.of(tensor)));
}

// What a step of a pass (a definition, a kernel) reads and writes.
struct Access {
  std::set<std::string> reads, writes;
};

// Whether `later` must stay after `earlier`: one writes what the other reads or writes.
bool dependsOn(const Access &later, const Access &earlier) {
  for (const std::string &w : earlier.writes)
    if (later.reads.count(w) || later.writes.count(w)) return true;
  for (const std::string &w : later.writes)
    if (earlier.reads.count(w)) return true;
  return false;
}

// The order of `steps` in which each step that writes nothing but `gradients` moves up to just
// after the last step it depends on, so its gradients complete early; such steps keep their
// order among themselves. Returns indices into `steps`.
std::vector<size_t> gradientsFirst(const std::vector<Access> &steps, const std::set<std::string> &gradients) {
  std::vector<size_t> out;
  std::vector<bool> moved; // out[i] is such a step
  for (size_t i = 0; i < steps.size(); ++i) {
    const Access &s = steps[i];
    bool onlyGradients = !s.writes.empty() && std::all_of(s.writes.begin(), s.writes.end(), [&](const std::string &w) {
      return gradients.count(w) > 0;
    });
    size_t at = out.size();
    if (onlyGradients) {
      while (at > 0 && !dependsOn(s, steps[out[at - 1]])) --at;
      while (at < out.size() && moved[at]) ++at; // after those moved there before it
    }
    out.insert(out.begin() + static_cast<std::ptrdiff_t>(at), i);
    moved.insert(moved.begin() + static_cast<std::ptrdiff_t>(at), onlyGradients);
  }
  return out;
}

// When each gradient is complete in `order` of `steps`: the position of the last step that
// reads or writes it (-1: none does).
std::map<std::string, int> completion(const std::vector<Access> &steps, const std::vector<size_t> &order,
                                      const std::vector<std::string> &gradients) {
  std::map<std::string, int> at;
  for (const std::string &g : gradients) at[g] = -1;
  for (size_t i = 0; i < order.size(); ++i) {
    const Access &s = steps[order[i]];
    for (const auto *names : {&s.reads, &s.writes})
      for (const std::string &n : *names)
        if (auto it = at.find(n); it != at.end()) it->second = static_cast<int>(i);
  }
  return at;
}

Kernel bucketKernel(const LoopProgram &p, const std::vector<std::string> &gradients, int number) {
  Kernel k;
  k.name = fmt::format("bucket{}", number);
  k.output = gradients.front();
  k.buffers = gradients;
  k.outputs = static_cast<int>(gradients.size());
  k.collective = k.bucket = true;
  k.message = number;
  k.body = block({});
  int64_t elements = 0;
  for (const std::string &g : gradients) elements += elementsOf(p, g);
  k.launchExtent = intImm(elements);
  return k;
}

} // namespace

std::vector<std::string> gradientOrder(const Program &backward, const std::vector<std::string> &gradients) {
  std::vector<Access> steps;
  for (const Definition &d : backward.defs) steps.push_back({tensorsRead(d), {d.tensor}});
  std::map<std::string, int> done =
      completion(steps, gradientsFirst(steps, {gradients.begin(), gradients.end()}), gradients);
  std::vector<std::string> order = gradients;
  std::stable_sort(order.begin(), order.end(), [&](const std::string &a, const std::string &b) { return done[a] < done[b]; });
  return order;
}

std::vector<std::string> parameterGradients(const Gradient &g, const Program &forward) {
  std::vector<std::string> gradients;
  for (const auto &[x, gname] : g.gradOf)
    if (const TensorDecl *t = forward.tensor(x); t && t->role == TensorRole::Param) gradients.push_back(gname);
  return gradientOrder(g.program, gradients);
}

LoopProgram bucketGradients(const LoopProgram &p, const GradientBuckets &buckets) {
  if (buckets.gradients.empty()) return p;
  std::vector<Access> steps;
  for (const Kernel &k : p.kernels) steps.push_back({kernelReads(k), kernelWrites(k)});
  const std::vector<size_t> order = gradientsFirst(steps, {buckets.gradients.begin(), buckets.gradients.end()});
  std::map<std::string, int> done = completion(steps, order, buckets.gradients);

  // The buckets, each after the step that completes its last gradient and after the bucket
  // before it.
  std::multimap<int, Kernel> placed; // position in `order` -> buckets to run after it
  std::vector<std::string> members;
  size_t bytes = 0;
  int number = 0, after = -1;
  auto close = [&] {
    if (members.empty()) return;
    for (const std::string &g : members) after = std::max(after, done[g]);
    placed.emplace(after, bucketKernel(p, members, number++));
    members.clear();
    bytes = 0;
  };
  for (const std::string &g : buckets.gradients) {
    size_t size = storedBytes(p, g);
    size_t cap = number == 0 ? buckets.firstBucketBytes : buckets.bucketBytes;
    if (!members.empty() && bytes + size > cap) close();
    members.push_back(g);
    bytes += size;
  }
  close();

  LoopProgram out = p;
  out.kernels.clear();
  auto emitAfter = [&](int i) {
    auto [begin, end] = placed.equal_range(i);
    for (auto it = begin; it != end; ++it) out.kernels.push_back(it->second);
  };
  emitAfter(-1);
  for (size_t i = 0; i < order.size(); ++i) {
    out.kernels.push_back(p.kernels[order[i]]);
    emitAfter(static_cast<int>(i));
  }
  return out;
}

} // namespace enc::ir
