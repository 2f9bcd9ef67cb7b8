// Data-parallel training: every parameter gradient is averaged over the process group as part
// of the backward pass. The gradients travel in buckets (as PyTorch's DDP does: a small first
// bucket, so communication starts early, larger ones after), and each bucket is placed right
// after the last kernel that touches any of its gradients: the runtime starts its all-reduce
// there and waits for all of them at the end of the pass, so communication overlaps the
// kernels that follow.
#pragma once

#include "compiler/Autodiff.h"
#include "compiler/LoopIR.h"

#include <cstddef>
#include <string>
#include <vector>

namespace enc::ir {

struct GradientBuckets {
  // The parameter gradients to average (none: no buckets), in the order buckets take them:
  // the same in every process (gradientOrder).
  std::vector<std::string> gradients;
  size_t firstBucketBytes = size_t{1} << 20;
  size_t bucketBytes = size_t{25} << 20;
};

// `gradients` in the order the backward tensor program completes them when each definition of
// nothing but those gradients runs as early as what it reads allows (a layer's weight gradient
// needs its output's gradient, not the gradients of the layers before it). It depends on the
// program alone, not on input sizes, so processes with other batch sizes order them alike
// (their kernels may not be: fusion and reduction splitting depend on sizes).
std::vector<std::string> gradientOrder(const Program &backward, const std::vector<std::string> &gradients);
// The gradients of `forward`'s parameters in the backward pass `g`, in gradientOrder.
std::vector<std::string> parameterGradients(const Gradient &g, const Program &forward);

// Moves each kernel that computes only gradients to average as early as what it reads allows,
// then adds a bucket kernel (Kernel::bucket) per bucket: `buckets.gradients` in their order,
// a bucket holding gradients until the next one would take it past its size (a gradient larger
// than a bucket is a bucket of its own). A bucket goes after the kernel that completes its
// last gradient, and after the bucket before it: every process starts them in one order.
LoopProgram bucketGradients(const LoopProgram &p, const GradientBuckets &buckets);

} // namespace enc::ir
