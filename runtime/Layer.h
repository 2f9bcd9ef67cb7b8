// A layer instance: hyper-parameters fixed, parameters initialized, forward compiled on first
// use for each input shape (CPU JIT through LLVM, or CUDA through NVRTC for Device::CUDA).
#pragma once

#include "compiler/ExpandNetwork.h"
#include "compiler/GradientBuckets.h"
#include "compiler/LoopIR.h"
#include "runtime/Library.h"
#include "runtime/ProcessGroup.h"
#include "runtime/Tensor.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace enc {

struct LayerOptions {
  // The dtype of the tensors the layer exchanges: inputs, outputs and their gradients. f16
  // and bf16 make an f32 layer that stores those in 16 bits: parameters, buffers, their
  // gradients and every intermediate stay f32, and all arithmetic and sums are f32.
  DType dtype = DType::F32;
  uint64_t seed = 0;
  // Training passes use batch statistics and update buffers; evaluation passes use the
  // buffers (the implicit hyper-parameter `training` of the .enc language).
  bool training = true;
  // false: no fusion, every intermediate stored (the benchmarks' baseline).
  bool fuse = true;
  // Where parameters live and kernels run. Inputs on the other device are copied over;
  // outputs and gradients are on this one.
  Device device = Device::CPU;
  // The processes allreduce(...) sums over (SyncBatchNorm's statistics; DistSyncBatchNorm's
  // process_group). nullptr: defaultProcessGroup() when the layer is made. A layer whose
  // group has one process (or none) computes allreduce(x) as x, with no collective at all
  // (unless the group's backend is NCCL: its collectives run, to measure what they cost).
  std::shared_ptr<ProcessGroup> group;
  // Data-parallel training: each backward pass averages every parameter gradient over `group`,
  // so processes that each run their share of a batch get the same gradients (for a loss that
  // is a mean over each share, those of the mean over the whole batch when the shares are
  // equal). The gradients travel in buckets, each all-reduced while the pass computes the rest
  // (compiler/GradientBuckets.h); inputs' gradients stay this process's own. No effect in a
  // group of one process.
  bool dataParallel = false;
  size_t firstBucketBytes = size_t{1} << 20;
  size_t bucketBytes = size_t{25} << 20;
  // GPU: contractions of an f32 layer may multiply on tensor cores in TF32 (10 fraction bits,
  // f32 accumulation), as torch's allow_tf32 for matmul. Off unless asked, or ENC_ALLOW_TF32=1.
  bool allowTf32 = false;
};

class GradientAverager;

class Layer {
public:
  Layer(std::shared_ptr<const Library> library, const std::string &name,
        const std::map<std::string, std::string> &settings = {}, LayerOptions options = {});
  ~Layer();

  const std::string &name() const { return name_; }
  DType dtype() const { return options_.dtype; }
  // Parameters and buffers: f64 for an f64 layer, else f32.
  DType paramDType() const { return options_.dtype == DType::F64 ? DType::F64 : DType::F32; }
  Device device() const { return options_.device; }
  // The group its collectives run in: nullptr when it runs in one process.
  const std::shared_ptr<ProcessGroup> &group() const { return group_; }
  std::vector<std::string> inputNames() const;
  std::vector<std::string> outputNames() const;

  // Parameters and buffers, by name.
  const std::map<std::string, Tensor> &params() const { return params_; }
  // Whether `name` is a learnable parameter (not a buffer).
  bool isParameter(const std::string &name) const;
  // Replaces a parameter or buffer; its shape must match. A value of paramDType() on the layer's
  // device becomes the parameter itself, sharing its storage (no copy: an optimizer's step hands
  // over the new value it computed; writing into `value` afterwards changes the parameter, as
  // with torch's `module.weight = Parameter(t)`). Any other value is converted to that dtype
  // and device, a copy the caller's tensor does not share. The layer itself never writes into a
  // parameter's storage: passes and setParam replace the tensor.
  void setParam(const std::string &name, const Tensor &value);

  // Parameters and buffers by name, as torch's state_dict(): the tensors as they are now (shared with
  // the layer until a pass or setParam replaces them).
  std::map<std::string, Tensor> stateDict() const { return params_; }
  // Writes stateDict() to a safetensors file (runtime/Safetensors.h), with the metadata
  // {"format": "pt"} that safetensors.torch writes.
  void saveState(const std::string &path) const;
  // The keys a loadState did not match, as torch's load_state_dict returns them.
  struct StateKeys {
    std::vector<std::string> missing;    // parameters and buffers the file does not have
    std::vector<std::string> unexpected; // tensors of the file the layer does not have
  };
  // Sets parameters and buffers by name from a safetensors file: shapes must match; F64, F32, F16 and
  // BF16 are converted to paramDType(). Keys "num_batches_tracked" and "*.num_batches_tracked" (torch
  // BatchNorm's int64 counter, which encc does not keep) are ignored, whatever their dtype. strict:
  // any missing or unexpected key is an error listing them all. Nothing is set unless all can be.
  StateKeys loadState(const std::string &path, bool strict = true);
  // What a strict loadState throws when the keys differ, with the keys themselves. Its hint names
  // a prefix that every unexpected key adds to a missing one (filePrefix: the file holds a parent
  // module's state), else loadState(path, false); a caller with other means words its own.
  struct StateKeysError : Error {
    StateKeysError(std::string message, std::string hint, StateKeys keys, std::optional<std::string> filePrefix)
        : Error(std::move(message), std::move(hint)), keys(std::move(keys)), filePrefix(std::move(filePrefix)) {}
    StateKeys keys;
    std::optional<std::string> filePrefix;
  };

  // Runs the forward pass. Inputs are checked against the declared shapes. The tensors the
  // backward pass needs are kept until the next forward.
  std::map<std::string, Tensor> forward(const std::map<std::string, Tensor> &inputs);

  // Runs the backward pass of the last forward: given the gradient of some outputs (others
  // count as zero), returns the gradient of every input and parameter, by name.
  std::map<std::string, Tensor> backward(const std::map<std::string, Tensor> &outputGrads);
  // The backward pass of the scalar `loss` (an output; for a tensor output, of its sum): what a
  // training step needs once the loss is part of the network.
  std::map<std::string, Tensor> backward(const std::string &loss);
  // Drops what the last forward pass kept for backward (its inputs, intermediates and outputs),
  // for a layer run forward only; backward() is then an error until the next forward.
  void releasePass();

  // The parameters' gradients summed over every backward pass since the last zeroGrad(), as
  // torch's .grad: micro-batches of one step each call forward and backward, then the optimizer
  // takes accumulatedGrads(). After one pass the entries are the tensors that backward
  // returned (no copy, so a training loop that never reads them pays nothing; changing those
  // tensors in place, e.g. averaging them over ranks, changes the entries too); each further
  // pass adds into new tensors, leaving what earlier passes returned as it was.
  const std::map<std::string, Tensor> &accumulatedGrads() const { return accumulated_; }
  void zeroGrad() { accumulated_.clear(); }

  // The derived backward pass (hyper-parameters substituted, fused).
  const ir::Program &gradientProgram();

  // The tensor program with hyper-parameters substituted (sizes from inputs stay symbolic).
  const ir::Program &program() const { return program_; }

  // The loop program the last forward (backward) pass ran: what `encc emit --emit=loops`
  // prints for the same sizes. Errors if there was no such pass yet.
  // The memory plan of the last forward (backward) pass: the bytes its temporaries take in one
  // arena shared by liveness, and would take each in storage of its own. Zero before a planned
  // pass: a forward pass is planned once the backward pass has been derived (at the first
  // backward), since until then it keeps every temporary for it.
  struct PassMemory {
    size_t arenaBytes = 0, unplannedBytes = 0;
  };
  PassMemory forwardMemory() const;
  PassMemory backwardMemory() const;
  // The bytes of the tensors the last forward pass keeps for the backward pass (activations:
  // its inputs and the parameters not counted). All its tensors until the backward pass has
  // been derived (at the first backward).
  size_t savedBytes() const;

  const ir::LoopProgram &lastForwardLoops() const;
  const ir::LoopProgram &lastBackwardLoops() const;

private:
  struct Compiled;
  std::shared_ptr<const Library> library_;
  const LayerSymbols *symbols_; // a network's: the layer its sub-layers expand to
  std::shared_ptr<const ExpandedNetwork> expansion_;
  std::string name_;
  LayerOptions options_;
  std::shared_ptr<ProcessGroup> group_; // of more than one process, or nullptr
  // Data-parallel: averages gradient buckets on a group of its own (its thread must not share
  // group_ with the pass's collectives); nullptr otherwise.
  std::unique_ptr<GradientAverager> averager_;
  bool sideStreamBuckets_ = false; // this pass started buckets on the GPU's side stream
  std::map<std::string, ir::Expr> hyper_;
  ir::Program program_;
  std::map<std::string, Tensor> params_;
  std::map<std::string, Tensor> accumulated_; // parameter gradients since zeroGrad()
  std::vector<int> aliasRanks_; // deprecated BatchNorm1d/2d/3d: the input ranks they accept
  std::map<std::string, std::unique_ptr<Compiled>> compiled_;     // forward, by input-size signature
  std::map<std::string, std::unique_ptr<Compiled>> compiledGrad_; // backward, likewise
  struct GradientInfo;
  std::unique_ptr<GradientInfo> gradient_;
  // State of the last forward pass, for backward.
  std::map<std::string, ir::Expr> lastSizes_;
  std::map<std::string, Tensor> lastBuffers_; // what its backward pass reads
  bool forwardRan_ = false;
  const Compiled *lastForward_ = nullptr, *lastBackward_ = nullptr;
  std::map<std::string, Shape> lastOutputShapes_;
  std::map<std::string, Shape> lastInputShapes_;
  std::string lastInputsText_;  // "X [1, 2, 3, 3]", for messages about what these inputs imply
  int64_t passes_ = 0;        // forward passes run: each draws new random numbers (Dropout)
  int64_t lastRandomSeed_ = 0; // the last forward's, which its backward must see again

  void initParams();
  void checkRequirements(const ir::Program &p, const std::map<std::string, ir::Expr> &sizes) const;
  Compiled &compile(const ir::Program &program, const std::map<std::string, ir::Expr> &sizes,
                    std::map<std::string, std::unique_ptr<Compiled>> &cache, const ir::ElementTypes &types,
                    const ir::GradientBuckets &buckets = {});
  // `keep`: the tensors the caller reads after the pass; the other temporaries share an arena by
  // liveness. nullptr: every temporary gets storage of its own.
  void run(const Compiled &c, std::map<std::string, Tensor> &buffers, int64_t randomSeed,
           const std::set<std::string> *keep);
  // Runs the collective kernels from `first` on that share its message as one all-reduce of a
  // packed buffer; returns the index after them.
  size_t runCollectives(const Compiled &c, size_t first, std::map<std::string, Tensor> &buffers);
  // Runs a pass's kernels from the first; bucket kernels start averaging their gradients (see
  // run), `deviceBuckets` collects those left for the end of the pass.
  void runKernels(const Compiled &c, std::map<std::string, Tensor> &buffers, int64_t randomSeed,
                  const std::vector<std::vector<std::string>> &poisonAt, std::vector<size_t> &deviceBuckets);
  void averageBuckets(const Compiled &c, const std::vector<size_t> &deviceBuckets, std::map<std::string, Tensor> &buffers);
  std::string bucketLabel(const Compiled &c, const ir::Kernel &k) const;
  static std::vector<Tensor *> bucketTensors(const ir::Kernel &k, std::map<std::string, Tensor> &buffers);
  std::string kernelLabel(const ir::Kernel &k) const; // for ENC_PROFILE
};

// Fills every Size variable of `p`'s shapes from input tensors; throws Error naming the layer,
// the input and both shapes on a mismatch. Returns the size values and the shapes the
// variadic dimensions stood for.
struct SizeBinding {
  std::map<std::string, ir::Expr> values;
  std::map<std::string, Shape> variadicDims; // size name -> the dimensions it collapsed
};
// `name` is the layer's name in messages (an alias such as BatchNorm2d shows as itself).
SizeBinding bindSizes(const ir::Program &p, const LayerSymbols &layer, const std::map<std::string, Tensor> &inputs,
                      const std::string &name, const std::map<std::string, ir::Expr> &hyperParams);

// The layer `name` of `lib`, or the layer a deprecated alias (BatchNorm2d) stands for, with
// a one-time warning.
const LayerSymbols &resolveLayer(const Library &lib, const std::string &name);

// `layer` as it compiles with the hyper-parameters `hyper`: a network's sub-layers expanded (the
// expansion owns that layer), any other layer itself. A network needs every hyper-parameter's value.
struct LayerInstance {
  const LayerSymbols *symbols = nullptr;
  std::shared_ptr<const ExpandedNetwork> expansion;
};
LayerInstance instantiateLayer(const Library &lib, const LayerSymbols &layer, const std::map<std::string, ir::Expr> &hyper);

// The compiler's element type for a tensor dtype, and back.
ir::ElemType elemTypeOf(DType t);
DType dtypeOf(ir::ElemType t);

// Evaluates a fully specialized integer expression.
int64_t evalInt(const ir::Expr &e);

// Throws for a requirement of `p` that folded to false, located at it in the .enc source and quoting
// it with the values of the hyper-parameters and sizes it names, for the layer `name` (as the user
// called it: an alias such as DistSyncBatchNorm) and the `inputs` that gave the sizes ("X [0, 3]",
// "" for none); when `final` (all sizes known), every one must have folded.
void checkFoldedRequirements(const ir::Program &p, const std::string &name, const LayerSymbols &symbols,
                             const std::map<std::string, ir::Expr> &hyper, const std::map<std::string, ir::Expr> &sizes,
                             bool final, const std::string &inputs = {});

// Throws for a tensor of `p` (sizes specialized) with a dimension that does not fit in 64 bits
// or is negative, or an output left empty by `sizes` none of which is 0: located at the
// tensor's declaration, for the layer `name` and the `inputs` that gave the sizes. Unless
// `final` (every size known), dimensions that still name a size are skipped.
void checkSpecializedShapes(const ir::Program &p, const std::string &name, const std::map<std::string, ir::Expr> &sizes,
                            const std::string &inputs, bool final);

} // namespace enc
