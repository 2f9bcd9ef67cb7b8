// Element-wise updates and reductions of CUDA tensors, for the optimizers (runtime/Optimizer.h,
// runtime/Adam.h) and the tensor operations (runtime/TensorOps.h): each is a small .enc layer of
// the runtime's own library (DeviceOps.cpp) that encc compiles like any other layer, so the work
// runs where the tensors are, with no copy to the host and back.
//
// Rules:
// - The layers take 1-D inputs: callers flatten with reshape({numel}) (no copy), so a layer is
//   compiled once per element count and dtype (then kept for the process), not per shape.
// - Values that change from call to call (a learning rate, a bias correction, a scale factor) are
//   small input tensors or parameters, never hyper-parameters: nothing recompiles per step.
// - One Layer per (layer, dtype, hyper-parameters) serves the whole process, under a mutex; its
//   tensors of the last pass are dropped after each call.
#pragma once

#include "runtime/Tensor.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace enc {
class Library;
}

namespace enc::device {

// The layers these updates run (AdamStep, SgdStep, ...), for tests and inspection.
std::shared_ptr<const Library> library();

struct Result {
  std::map<std::string, Tensor> outputs;
  std::map<std::string, Tensor> buffers; // the layer's buffers after the pass (paramDType: f32 or f64)
};

// Runs `layer` of the runtime's library forward on the GPU with element type `dtype`: `inputs`
// (CUDA tensors of `dtype`), `settings` its hyper-parameters, `params` the value of each
// one-element parameter (kept in f32, or f64 for an f64 layer: the precision of a 16-bit layer's
// arithmetic).
Result run(const std::string &layer, DType dtype, const std::map<std::string, Tensor> &inputs,
           const std::map<std::string, std::string> &settings = {}, const std::map<std::string, double> &params = {});

// `values` as a 1-D CUDA tensor of `dtype`: the per-call numbers of an update.
Tensor scalars(DType dtype, const std::vector<double> &values);

// `t` as a 1-D tensor of its elements (same storage).
inline Tensor flat(const Tensor &t) { return t.reshape({t.numel()}); }

} // namespace enc::device
