#include "runtime/Layer.h"

#include "compiler/Autodiff.h"
#include "compiler/Passes.h"
#include "compiler/Pipeline.h"
#include "compiler/StorageTypes.h"
#include "compiler/HyperParams.h"
#include "runtime/Autotune.h"
#include "runtime/Executor.h"
#include "runtime/Gpu.h"
#include "runtime/GradientAverager.h"
#include "runtime/HostMemory.h"
#include "runtime/KernelProfile.h"
#include "runtime/MemoryPlan.h"
#include "runtime/Rng.h"
#include "runtime/TensorOps.h"
#include "runtime/ThreadPool.h"
#include "support/Env.h"
#include "support/InternalError.h"
#include "support/Suggest.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <mutex>
#include <regex>
#include <set>
#include <utility>

namespace enc {

namespace {

// Whether `e` is made of integer constants only: then it stayed unfolded because its value does not fit in
// 64 bits (constant folding never wraps).
bool onlyConstants(const ir::Expr &e) {
  switch (e->kind) {
  case ir::ExprKind::IntImm:
  case ir::ExprKind::FloatImm:
  case ir::ExprKind::BoolImm: return true;
  case ir::ExprKind::Unary:
  case ir::ExprKind::Binary:
  case ir::ExprKind::Select:
  case ir::ExprKind::Cast: return std::all_of(e->args.begin(), e->args.end(), onlyConstants);
  default: return false;
  }
}

// "file:line:col: " of a declaration or requirement in the .enc source, as a run-time error that it decides
// starts; "" for what the source does not declare.
std::string sourcePrefix(const SourceLoc &loc) { return loc.valid() ? loc.where() + ": " : ""; }
// The same for a declaration looked up by name (a symbol, a tensor), "" where there is none.
template <class Decl> std::string sourcePrefix(const Decl *decl) { return decl ? sourcePrefix(decl->loc) : ""; }

} // namespace

int64_t evalInt(const ir::Expr &e) {
  int64_t v = 0;
  if (ir::isConst(e, &v)) return v;
  if (std::optional<ir::UndefinedArithmetic> bad = ir::undefinedArithmetic(e); bad && onlyConstants(e)) {
    if (bad->overflow)
      throw Error(fmt::format("size {} is too large: its value does not fit in 64 bits", ir::print(e)), bad->hint());
    throw Error(bad->op == e ? fmt::format("size {} {}", ir::print(e), bad->why)
                             : fmt::format("size {}: {} {}", ir::print(e), ir::print(bad->op), bad->why),
                bad->hint());
  }
  internalError("size '{}' is not known after specialization", ir::print(e));
}

struct Layer::Compiled {
  ir::LoopProgram loops;
  // The memory plan of the temporaries (runtime/MemoryPlan.h) for the tensors a pass is given and
  // keeps. Its arena is allocated per pass (from the caching allocators) and gone after it.
  mutable std::optional<MemoryPlan> plan;
  mutable std::set<std::string> planGiven, planKeep;
  std::unique_ptr<Executor> executor;  // compiled kernels of the layer's device
  std::map<std::string, Shape> shapes; // every tensor the kernels touch
  // Per kernel: a scatter whose output no earlier kernel wrote, which the runner zeroes first.
  std::vector<bool> zeroOutput;
  // Whether every process was seen to exchange as many elements as this one (checked once).
  mutable bool collectiveSizesAgree = false, bucketSizesAgree = false;
  bool averagesGradients = false; // it has gradient buckets (a data-parallel backward pass)
};

struct Layer::GradientInfo {
  ir::Gradient gradient; // program fused
};

namespace {

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// PyTorch-Encoding's deprecated BatchNorm1d/2d/3d: SyncBatchNorm restricted to input ranks.
struct Alias {
  const char *name;
  const char *target;
  std::vector<int> ranks;
};
const Alias kAliases[] = {{"BatchNorm1d", "SyncBatchNorm", {2, 3}},
                          {"BatchNorm2d", "SyncBatchNorm", {4}},
                          {"BatchNorm3d", "SyncBatchNorm", {5}}};

const Alias *findAlias(const Library &lib, const std::string &name) {
  if (lib.find(name)) return nullptr; // a layer of that name wins
  for (const Alias &a : kAliases)
    if (name == a.name && lib.find(a.target)) return &a;
  return nullptr;
}

} // namespace

const LayerSymbols &resolveLayer(const Library &lib, const std::string &name) {
  const Alias *alias = findAlias(lib, name);
  if (!alias && !lib.find(name)) {
    // The aliases are names a user may mean too.
    std::vector<std::string> names = lib.layerNames();
    for (const Alias &a : kAliases)
      if (lib.find(a.target)) names.push_back(a.name);
    throw Error(fmt::format("no layer named '{}'{}", name, didYouMean(name, names)),
                names.empty() ? std::string("the .enc source defines no layers")
                              : fmt::format("available layers: {}", fmt::join(names, ", ")));
  }
  if (!alias) return lib.get(name);
  static std::mutex mu;
  static std::set<std::string> warned;
  std::lock_guard<std::mutex> lock(mu);
  if (warned.insert(name).second)
    std::cerr << fmt::format("encc: warning: {} is deprecated; use {} (it accepts inputs of any rank from 2)\n", name,
                             alias->target);
  return lib.get(alias->target);
}

Layer::Layer(std::shared_ptr<const Library> library, const std::string &name,
             const std::map<std::string, std::string> &settings, LayerOptions options)
    : library_(std::move(library)), symbols_(&resolveLayer(*library_, name)), name_(name), options_(options) {
  if (const Alias *alias = findAlias(*library_, name)) aliasRanks_ = alias->ranks;
  hyper_ = resolveHyperParams(*symbols_, settings);
  if (options_.device == Device::CUDA) cuda::Gpu::require();
  hyper_["training"] = ir::boolImm(options_.training);
  if (symbols_->network) {
    expansion_ = instantiateLayer(*library_, *symbols_, hyper_).expansion;
    symbols_ = &expansion_->symbols;
  }
  group_ = options_.group ? options_.group : defaultProcessGroup();
  // A group of one process has nothing to exchange, except an NCCL one, whose collectives
  // still run (what the synchronized pass costs).
  if (group_ && group_->size() < 2 && std::string(group_->backend()) != "nccl") group_ = nullptr;
  if (options_.dataParallel && group_) {
    averager_ = std::make_unique<GradientAverager>(group_->subgroup(group_->allRanks()));
  }
  program_ = ir::Pipeline().forward(*symbols_, hyper_, {.fuse = options_.fuse, .distributed = group_ != nullptr});
  checkRequirements(program_, {});
  initParams();
  ir::checkIntegerArithmetic(program_);
}

Layer::~Layer() = default;

Layer::PassMemory Layer::forwardMemory() const {
  if (!lastForward_ || !lastForward_->plan) return {};
  return {lastForward_->plan->arenaBytes, lastForward_->plan->unplannedBytes};
}

Layer::PassMemory Layer::backwardMemory() const {
  if (!lastBackward_ || !lastBackward_->plan) return {};
  return {lastBackward_->plan->arenaBytes, lastBackward_->plan->unplannedBytes};
}

size_t Layer::savedBytes() const {
  size_t bytes = 0;
  for (const auto &[name, t] : lastBuffers_)
    if (!params_.count(name) && !lastInputShapes_.count(name)) bytes += t.nbytes();
  return bytes;
}

LayerInstance instantiateLayer(const Library &lib, const LayerSymbols &layer, const std::map<std::string, ir::Expr> &hyper) {
  if (!layer.network) return {&layer, nullptr};
  for (const ast::HyperParam &hp : layer.layer->hyperParams) {
    bool pair = hp.type.kind == ast::HyperParamType::Kind::Int2;
    if (!hyper.count(pair ? ir::pairComponentName(hp.name.text, 0) : hp.name.text))
      throw Error(fmt::format("network {} needs a value for hyper-parameter '{}' to expand its sub-layers",
                              layer.layer->name.text, hp.name.text),
                  fmt::format("pass --set {}=VALUE", hp.name.text));
  }
  std::map<std::string, ir::Expr> values = hyper;
  if (!values.count("training")) values["training"] = ir::boolImm(true);
  auto expansion = expandNetwork(layer, values, [&lib](const std::string &name) { return lib.findSubLayer(name); });
  return {&expansion->symbols, expansion};
}

std::vector<std::string> Layer::inputNames() const { return program_.namesWithRole(TensorRole::Input); }
std::vector<std::string> Layer::outputNames() const { return program_.namesWithRole(TensorRole::Output); }

void Layer::initParams() {
  auto hyper = [&](const std::string &v, ir::VarKind) -> ir::Expr {
    auto it = hyper_.find(v);
    return it == hyper_.end() ? nullptr : it->second;
  };
  auto init = [&](const ast::TensorDecl &d) {
    // A disabled parameter (bias = false) was dropped from the program by dropDisabledState.
    if (!program_.tensor(d.name.text)) return;
    Shape shape;
    for (const ast::Dim &dim : d.dims) {
      int64_t n = 0;
      try {
        n = evalInt(ir::substitute(ir::lowerExpr(*dim.size, *symbols_), hyper));
      } catch (const Error &e) {
        throw Error(fmt::format("{}: layer {}: parameter '{}': {}", dim.size->loc.where(), name_, d.name.text, e.what()),
                    e.hint());
      }
      if (n < 0)
        throw Error(fmt::format("{}: layer {}: parameter '{}' would have a negative dimension ({})", dim.size->loc.where(),
                                name_, d.name.text, n),
                    "check the hyper-parameters");
      shape.push_back(n);
    }
    checkTensorSize(fmt::format("{}layer {}: parameter '{}'", sourcePrefix(d.loc), name_, d.name.text), shape,
                    paramDType());
    Tensor t = Tensor::empty(paramDType(), shape, Device::CPU); // every element is written below
    std::string kind = d.init ? d.init->name : "zeros";
    std::vector<double> args;
    if (d.init)
      for (const ast::ExprPtr &a : d.init->args) {
        ir::Expr v = ir::cast(ir::Type::Float, ir::substitute(ir::lowerExpr(*a, *symbols_), hyper));
        if (v->kind != ir::ExprKind::FloatImm)
          fail("layer {}: the initializer of '{}' is not a constant: {}", name_, d.name.text, ir::print(v));
        args.push_back(v->floatValue);
      }
    const Rng stream(options_.seed, d.name.text);
    enum class Init { Zeros, Ones, Constant, Uniform, Normal } how = Init::Zeros;
    if (kind == "uniform") how = Init::Uniform;
    else if (kind == "normal") how = Init::Normal;
    else if (kind == "ones") how = Init::Ones;
    else if (kind == "constant") how = Init::Constant;
    // As torch.nn.init: finite arguments, uniform's low end at most its high end, a
    // non-negative standard deviation.
    auto badInit = [&](const std::string &why, const std::string &hint) {
      throw Error(fmt::format("{}: layer {}: the initializer of '{}': {}", d.init->loc.where(), name_, d.name.text, why),
                  hint);
    };
    for (size_t i = 0; i < args.size(); ++i)
      if (!std::isfinite(args[i]))
        badInit(fmt::format("argument {} of {}(...) is {}", i + 1, kind, args[i]), "initializer arguments are finite numbers");
    if (how == Init::Uniform && args[0] > args[1])
      badInit(fmt::format("uniform(low, high) with low = {} > high = {}", args[0], args[1]), "swap the bounds");
    if (how == Init::Normal && args[1] < 0)
      badInit(fmt::format("normal(mean, std) with std = {} < 0", args[1]), "a standard deviation is not negative");
    // Straight into the storage and in parallel (a network has millions of parameters): element i
    // takes the stream's draws from i * drawsPerElement on, as a sequential fill would.
    auto fill = [&](auto *out) {
      using T = std::remove_pointer_t<decltype(out)>;
      const uint64_t draws = how == Init::Normal ? 2 : 1;
      ThreadPool::global().parallelFor(0, t.numel(), [&](int64_t b, int64_t e) {
        switch (how) {
        case Init::Zeros: std::fill(out + b, out + e, T(0)); break;
        case Init::Ones: std::fill(out + b, out + e, T(1)); break;
        case Init::Constant: std::fill(out + b, out + e, static_cast<T>(args[0])); break;
        case Init::Uniform: {
          // One loop with no carried state, which vectorizes: the same values as drawing in turn.
          const double lo = args[0], width = args[1] - args[0];
          for (int64_t i = b; i < e; ++i)
            out[i] = static_cast<T>(lo + width * Rng::toUnit(stream.peek(static_cast<uint64_t>(i))));
          break;
        }
        case Init::Normal: {
          Rng rng = stream;
          rng.skip(static_cast<uint64_t>(b) * draws);
          for (int64_t i = b; i < e; ++i) out[i] = static_cast<T>(rng.normal(args[0], args[1]));
          break;
        }
        }
      }, 1 << 16);
    };
    if (t.dtype() == DType::F64) fill(t.dataAs<double>());
    else fill(t.dataAs<float>());
    params_[d.name.text] = t.to(options_.device);
  };
  for (const ast::TensorDecl &p : symbols_->layer->params) init(p);
  for (const ast::TensorDecl &b : symbols_->layer->buffers) init(b);
}

// `require` conditions: those on hyper-parameters fold when the layer is created, those on
// sizes when it runs (`final`); a false one is an error quoting the condition and its values.
void Layer::checkRequirements(const ir::Program &p, const std::map<std::string, ir::Expr> &sizes) const {
  checkFoldedRequirements(p, name_, *symbols_, hyper_, sizes, !sizes.empty(), sizes.empty() ? "" : lastInputsText_);
}

void checkFoldedRequirements(const ir::Program &p, const std::string &name, const LayerSymbols &symbols,
                             const std::map<std::string, ir::Expr> &hyper, const std::map<std::string, ir::Expr> &sizes,
                             bool final, const std::string &inputs) {
  for (const ir::Requirement &r : p.requirements) {
    if (r.condition->kind != ir::ExprKind::BoolImm) {
      if (final) internalError("requirement '{}' of layer {} is not constant", r.text, name);
      continue;
    }
    if (r.condition->boolValue) continue;
    // The values of the names the condition mentions (kernel_size_1 is written kernel_size[1]).
    std::string values;
    for (const auto *m : {&hyper, &sizes})
      for (const auto &[n, v] : *m) {
        std::string shown = n;
        if (n.size() > 2 && n[n.size() - 2] == '_' && (n.back() == '0' || n.back() == '1') &&
            symbols.hyperParam(n.substr(0, n.size() - 2)))
          shown = fmt::format("{}[{}]", n.substr(0, n.size() - 2), n.back());
        std::regex word("(^|[^A-Za-z0-9_])" + std::regex_replace(shown, std::regex(R"([\[\]])"), R"(\$&)") +
                        "($|[^A-Za-z0-9_])");
        if (n != "training" && n != "distributed" && std::regex_search(r.text, word))
          values += fmt::format("{}{} = {}", values.empty() ? "" : ", ", shown, ir::print(v));
      }
    throw Error(fmt::format("{}layer {} requires {}{}{}", sourcePrefix(r.loc), name, r.text,
                            values.empty() ? "" : " (" + values + ")", inputs.empty() ? "" : " for input " + inputs),
                "change the hyper-parameters or the input shapes so that it holds");
  }
}

bool Layer::isParameter(const std::string &name) const {
  const TensorSymbol *t = symbols_->find(name);
  return t && t->role == TensorRole::Param && params_.count(name);
}

void checkSpecializedShapes(const ir::Program &p, const std::string &name, const std::map<std::string, ir::Expr> &sizes,
                            const std::string &inputs, bool final) {
  bool emptyInput = std::any_of(sizes.begin(), sizes.end(),
                                [](const auto &kv) { return ir::isConst(kv.second, nullptr) && kv.second->intValue == 0; });
  for (const ir::TensorDecl &t : p.tensors) {
    const char *role = t.role == TensorRole::Output ? "output" : "tensor";
    Shape known; // the dimensions evaluated, all of them when `final`
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (!final && !onlyConstants(t.shape[i])) continue;
      int64_t n = 0;
      try {
        n = evalInt(t.shape[i]);
      } catch (const Error &e) { // a size too large for 64 bits: name the tensor it is a dimension of
        throw Error(fmt::format("{}layer {}: dimension {} of '{}' for {}: {}", sourcePrefix(t.loc), name, i, t.name,
                                inputs, e.what()),
                    e.hint());
      }
      if (n < 0 || (n == 0 && !emptyInput && t.role == TensorRole::Output))
        throw Error(fmt::format("{}layer {}: {} '{}' would have dimension {} of size {} for {}", sourcePrefix(t.loc),
                                name, role, t.name, i, n, inputs),
                    "the input is too small for the layer's hyper-parameters (kernel size, stride, padding)");
      known.push_back(n);
    }
    // Each dimension fits in 64 bits but their product may not (an empty input's other dimensions
    // are not bounded by memory); no element type is wider than 8 bytes, so 2^60 elements are the most
    // any tensor's byte count holds.
    std::optional<int64_t> numel = checkedNumel(known);
    if (!numel || *numel > (int64_t(1) << 60))
      throw Error(fmt::format("{}layer {}: {} '{}' would have shape {} for {}: it is too large (more elements than a 64-bit byte count "
                              "holds)",
                              sourcePrefix(t.loc), name, role, t.name, shapeString(known), inputs),
                  "use smaller sizes: a smaller batch or input, fewer features or channels");
  }
}

void Layer::setParam(const std::string &pname, const Tensor &value) {
  auto it = params_.find(pname);
  if (it == params_.end()) {
    std::string names;
    for (const auto &[n, _] : params_) names += (names.empty() ? "" : ", ") + n;
    throw Error(fmt::format("layer {} has no parameter or buffer '{}'", name_, pname),
                names.empty() ? "this layer has no parameters" : "its parameters are " + names);
  }
  if (value.shape() != it->second.shape()) {
    throw Error(fmt::format("{}layer {}: parameter '{}' has shape {}, but the value given has shape {}",
                            sourcePrefix(symbols_->find(pname)), name_, pname, shapeString(it->second.shape()),
                            shapeString(value.shape())));
  }
  it->second = value.to(paramDType()).to(options_.device); // the same dtype and device: shared
}

DType dtypeOf(ir::ElemType t) {
  switch (t) {
  case ir::ElemType::F16: return DType::F16;
  case ir::ElemType::BF16: return DType::BF16;
  case ir::ElemType::F32: return DType::F32;
  case ir::ElemType::F64: return DType::F64;
  }
  return DType::F32;
}

ir::ElemType elemTypeOf(DType t) {
  switch (t) {
  case DType::F16: return ir::ElemType::F16;
  case DType::BF16: return ir::ElemType::BF16;
  case DType::F32: return ir::ElemType::F32;
  case DType::F64: return ir::ElemType::F64;
  }
  return ir::ElemType::F32;
}

SizeBinding bindSizes(const ir::Program &p, const LayerSymbols &layer, const std::map<std::string, Tensor> &inputs,
                      const std::string &lname, const std::map<std::string, ir::Expr> &hyper) {
  SizeBinding out;
  for (const auto &[name, _] : inputs)
    if (!p.tensor(name) || p.tensor(name)->role != TensorRole::Input) {
      std::string names;
      for (const std::string &n : p.namesWithRole(TensorRole::Input)) names += (names.empty() ? "" : ", ") + n;
      throw Error(fmt::format("layer {} has no input '{}'", lname, name), "its inputs are " + names);
    }
  for (const TensorSymbol &sym : layer.tensors) {
    if (sym.role != TensorRole::Input) continue;
    auto it = inputs.find(sym.name);
    if (it == inputs.end())
      throw Error(fmt::format("{}layer {} needs input '{}'", sourcePrefix(sym.loc), lname, sym.name),
                  fmt::format("pass --input {}=FILE.npy", sym.name));
    const Shape &actual = it->second.shape();
    const ir::TensorDecl *decl = p.tensor(sym.name);
    std::string expected = "[";
    for (size_t i = 0; i < sym.shape.size(); ++i)
      expected += (i ? ", " : "") + sizeText(*sym.shape[i]) + (sym.expands[i] ? "..." : "") +
                  (sym.counts[i] ? "(" + sizeText(*sym.counts[i]) + ")" : "");
    expected += "]";
    // Located at the input's declaration, or at the dimension that does not match.
    auto mismatch = [&](const std::string &detail, const SourceLoc &at) {
      throw Error(fmt::format("{}layer {}: input '{}' has shape {}, but the layer expects {}: {}", sourcePrefix(at),
                              lname, sym.name, shapeString(actual), expected, detail));
    };
    // Declared dimensions take actual ones: A...(n) exactly n, a last N... all the rest (zero
    // or more), any other one; a collapsed run counts as the product of its dimensions.
    size_t rank = sym.shape.size();
    std::vector<size_t> take(rank, 1);
    size_t fixed = 0;
    for (size_t i = 0; i < rank; ++i) {
      if (const ast::Expr *count = sym.counts[i]) {
        int64_t n = evalInt(ir::substitute(ir::lowerExpr(*count, layer), [&](const std::string &v, ir::VarKind) -> ir::Expr {
          auto it = hyper.find(v);
          return it == hyper.end() ? nullptr : it->second;
        }));
        if (n < 0)
          throw Error(fmt::format("{}layer {}: {}...({}) of input '{}' is {}, a negative count", sourcePrefix(count->loc),
                                  lname, sizeText(*sym.shape[i]), sizeText(*count), sym.name, n));
        take[i] = static_cast<size_t>(n);
      } else if (sym.expands[i]) {
        take[i] = 0; // the open-ended last one: set below
      }
      fixed += take[i];
    }
    if (sym.variadic ? actual.size() < fixed : actual.size() != fixed)
      mismatch(fmt::format("{} dimensions instead of {}{}", actual.size(), sym.variadic ? "at least " : "", fixed),
               sym.loc);
    if (sym.variadic) take[rank - 1] = actual.size() - fixed;
    Shape collapsed;
    for (size_t i = 0, pos = 0; i < rank; pos += take[i], ++i) {
      Shape run(actual.begin() + static_cast<long>(pos), actual.begin() + static_cast<long>(pos + take[i]));
      collapsed.push_back(shapeNumel(run));
      if (sym.expands[i]) out.variadicDims[sizeText(*sym.shape[i])] = run;
    }
    for (size_t i = 0; i < rank; ++i) {
      const ir::Expr &d = decl->shape[i];
      if (d->kind == ir::ExprKind::Var && d->varKind == ir::VarKind::Size && !out.values.count(d->name)) {
        out.values[d->name] = ir::intImm(collapsed[i]);
        continue;
      }
      ir::Expr v = ir::substitute(d, [&](const std::string &n, ir::VarKind) -> ir::Expr {
        auto f = out.values.find(n);
        return f == out.values.end() ? nullptr : f->second;
      });
      int64_t want = 0;
      if (!ir::isConst(v, &want)) internalError("cannot evaluate dimension {} of input '{}'", ir::print(d), sym.name);
      if (want != collapsed[i])
        mismatch(fmt::format("dimension {} is {}, but {} = {}", i, collapsed[i], sizeText(*sym.shape[i]), want),
                 sym.shape[i]->loc);
    }
  }
  return out;
}

Layer::Compiled &Layer::compile(const ir::Program &program, const std::map<std::string, ir::Expr> &sizes,
                               std::map<std::string, std::unique_ptr<Compiled>> &cache, const ir::ElementTypes &types,
                               const ir::GradientBuckets &buckets) {
  std::string signature;
  for (const auto &[n, v] : sizes) signature += n + "=" + ir::print(v) + ";";
  auto found = cache.find(signature);
  if (found != cache.end()) return *found->second;

  auto c = std::make_unique<Compiled>();
  const ir::Pipeline pipeline;
  ir::Program prog = pipeline.specializeSizes(program, sizes);
  checkRequirements(prog, sizes);
  checkSpecializedShapes(prog, name_, sizes, "input " + lastInputsText_, true);
  ir::checkIntegerArithmetic(prog);
  ir::TargetOptions target;
  target.target = options_.device == Device::CUDA ? ir::Target::GPU : ir::Target::CPU;
  target.fuse = options_.fuse;
  target.types = types;
  target.averageGradients = buckets;
  target.allowTf32 = options_.allowTf32 || envFlag("ENC_ALLOW_TF32");
  c->loops = pipeline.lower(prog, target);
  // Tiled GPU contractions at the tile shapes timed fastest on this GPU (runtime/Autotune.h).
  if (target.target == ir::Target::GPU && autotuneEnabled()) {
    std::map<std::string, std::string> shapes = autotuneTiles(pipeline, prog, target, c->loops, name_);
    if (!shapes.empty()) {
      target.tileShapes = std::move(shapes);
      c->loops = pipeline.lower(prog, target);
    }
  }
  // Every buffer the kernels touch, the temporaries lowering added included.
  for (const ir::TensorDecl &t : c->loops.tensors.tensors) {
    Shape &s = c->shapes[t.name];
    for (const ir::Expr &d : t.shape) s.push_back(evalInt(d));
  }
  std::set<std::string> written;
  for (const ir::Kernel &k : c->loops.kernels) {
    c->averagesGradients |= k.bucket;
    c->zeroOutput.push_back(k.scatters && !written.count(k.buffers[0]));
    for (int o = 0; o < k.outputs; ++o) written.insert(k.buffers[static_cast<size_t>(o)]);
  }
  // Everything but the random seed was folded into the kernels.
  for (const ir::Kernel &k : c->loops.kernels)
    for (const ir::SizeParam &p : k.params)
      if (p.name != ir::kRandomSeed) internalError("kernel {} reads unresolved '{}'", k.name, p.name);
  c->executor = options_.device == Device::CUDA ? makeGpuExecutor(c->loops, name_) : makeCpuExecutor(c->loops);
  auto &ref = *c;
  cache[signature] = std::move(c);
  return ref;
}

void Layer::run(const Compiled &c, std::map<std::string, Tensor> &buffers, int64_t randomSeed,
                const std::set<std::string> *keep) {
  // Temporaries that do not outlive the pass share one arena by liveness.
  std::vector<std::vector<std::string>> poisonAt(c.loops.kernels.size()); // planned tensors, by first kernel
  if (keep) {
    std::set<std::string> given;
    for (const auto &[n, t] : buffers) given.insert(n);
    if (!c.plan || c.planGiven != given || c.planKeep != *keep) {
      c.plan = planMemory(c.loops, c.shapes, given, *keep);
      c.planGiven = std::move(given);
      c.planKeep = *keep;
    }
    Tensor arena = Tensor::empty(DType::F32, {static_cast<int64_t>(c.plan->arenaBytes / 4)}, options_.device);
    const bool poison = options_.device == Device::CPU ? poisonHostMemory() : cuda::Gpu::require().poisonFreshMemory();
    for (const MemoryPlan::Slot &s : c.plan->slots) {
      buffers[s.tensor] = arena.view(s.offset, dtypeOf(c.loops.types.of(s.tensor)), c.shapes.at(s.tensor));
      if (poison) poisonAt[s.first].push_back(s.tensor); // what an earlier tensor left there is not data
    }
  }
  // Kernels write every element they own; scatter outputs that no earlier kernel wrote (the
  // tensor's own definition) are zeroed before their kernel runs.
  for (const auto &[n, s] : c.shapes)
    if (!buffers.count(n)) {
      DType dtype = dtypeOf(c.loops.types.of(n));
      checkTensorSize(fmt::format("{}layer {}: tensor '{}' (for input {})", sourcePrefix(program_.tensor(n)), name_, n,
                                  lastInputsText_),
                      s, dtype, options_.device);
      buffers[n] = Tensor::empty(dtype, s, options_.device);
    }
  std::vector<size_t> deviceBuckets;
  try {
    runKernels(c, buffers, randomSeed, poisonAt, deviceBuckets);
  } catch (...) {
    // Buckets already started read this pass's gradients: let them end before they go.
    if (c.averagesGradients) try {
        if (std::exchange(sideStreamBuckets_, false)) averager_->group().joinSideStream();
        averager_->finish();
      } catch (const std::exception &) {
        // The kernel's failure is the one to report.
      }
    throw;
  }
  if (c.averagesGradients) averageBuckets(c, deviceBuckets, buffers);
}

void Layer::runKernels(const Compiled &c, std::map<std::string, Tensor> &buffers, int64_t randomSeed,
                       const std::vector<std::vector<std::string>> &poisonAt, std::vector<size_t> &deviceBuckets) {
  const bool profiling = kernelProfiling();
  for (size_t i = 0; i < c.loops.kernels.size(); ++i) {
    const ir::Kernel &k = c.loops.kernels[i];
    if (k.bucket) {
      if (!averager_) internalError("layer {} has a gradient bucket but is not data-parallel", name_);
      // Host gradients are averaged on the averager's thread while the kernels after this one
      // run; device gradients on the GPU's side stream where the group can (NCCL), else,
      // through host memory, at the end of the pass.
      if (options_.device != Device::CPU) {
        std::vector<Tensor *> gradients = bucketTensors(k, buffers);
        auto started = std::chrono::steady_clock::now();
        if (!c.bucketSizesAgree) checkBucketCount(averager_->group(), bucketLabel(c, k), gradients);
        if (averager_->group().startAverageOnSideStream(gradients)) {
          sideStreamBuckets_ = true;
          if (profiling) recordKernelTime(bucketLabel(c, k) + " (enqueued on the side stream)", secondsSince(started));
        } else {
          deviceBuckets.push_back(i);
        }
        continue;
      }
      std::vector<Tensor> gradients;
      for (const std::string &g : k.buffers) gradients.push_back(buffers.at(g));
      averager_->start(bucketLabel(c, k), std::move(gradients), !c.bucketSizesAgree);
      continue;
    }
    if (k.collective) {
      i = runCollectives(c, i, buffers) - 1;
      continue;
    }
    for (const std::string &t : poisonAt[i]) buffers.at(t).poison();
    auto started = std::chrono::steady_clock::now();
    c.executor->launch(i, buffers, randomSeed, c.zeroOutput[i]);
    if (profiling) {
      c.executor->finish();
      recordKernelTime(kernelLabel(k), secondsSince(started));
    }
  }
}

void Layer::averageBuckets(const Compiled &c, const std::vector<size_t> &deviceBuckets,
                           std::map<std::string, Tensor> &buffers) {
  auto started = std::chrono::steady_clock::now();
  averager_->finish();
  if (std::exchange(sideStreamBuckets_, false)) averager_->group().joinSideStream();
  for (size_t i : deviceBuckets) // their counts were checked when they were reached
    averageBucket(averager_->group(), bucketLabel(c, c.loops.kernels[i]), bucketTensors(c.loops.kernels[i], buffers),
                  /*checkCount=*/false);
  c.bucketSizesAgree = true;
  if (kernelProfiling())
    recordKernelTime(fmt::format("{} waiting for gradient buckets at the end of backward", name_), secondsSince(started));
}

std::vector<Tensor *> Layer::bucketTensors(const ir::Kernel &k, std::map<std::string, Tensor> &buffers) {
  std::vector<Tensor *> gradients;
  for (const std::string &g : k.buffers) gradients.push_back(&buffers.at(g));
  return gradients;
}

std::string Layer::bucketLabel(const Compiled &c, const ir::Kernel &k) const {
  size_t bytes = 0;
  for (const std::string &g : k.buffers)
    bytes += static_cast<size_t>(shapeNumel(c.shapes.at(g))) * dtypeSize(dtypeOf(c.loops.types.of(g)));
  return fmt::format("{}{} gradient {}: all-reduce of {} tensor{}, {:.2f} MB", name_,
                     options_.device == Device::CUDA ? " [cuda]" : "", k.name, k.buffers.size(),
                     k.buffers.size() == 1 ? "" : "s", static_cast<double>(bytes) / 1e6);
}

std::string Layer::kernelLabel(const ir::Kernel &k) const {
  std::string where = k.loc.valid() ? fmt::format(" ({}:{})", k.loc.file->name(), k.loc.line()) : "";
  return fmt::format("{}{} {}{}", name_, options_.device == Device::CUDA ? " [cuda]" : "", k.name, where);
}

size_t Layer::runCollectives(const Compiled &c, size_t first, std::map<std::string, Tensor> &buffers) {
  const auto &ks = c.loops.kernels;
  size_t end = first;
  while (end < ks.size() && ks[end].collective && ks[end].message == ks[first].message) ++end;
  if (!group_) internalError("layer {} has a collective but no process group", name_);
  auto started = std::chrono::steady_clock::now();
  std::vector<Tensor> sums;
  for (size_t i = first; i < end; ++i) sums.push_back(buffers.at(ks[i].buffers[1]).clone());
  if (!c.collectiveSizesAgree) {
    // A process with other sizes (another num_features) would sum misaligned data: refuse.
    double n = 0, total = 0;
    for (const Tensor &t : sums) n += static_cast<double>(t.numel());
    if (!sameCountInGroup(*group_, n, &total))
      throw Error(fmt::format("layer {}: {} sums {} values over the group, but the other processes sum a different "
                              "number ({} in all over {} processes)",
                              name_, group_->describe(), n, total, group_->size()),
                  "every process must create the layer with the same hyper-parameters (num_features)");
    c.collectiveSizesAgree = true;
  }
  std::vector<Tensor *> parts;
  for (Tensor &t : sums) parts.push_back(&t);
  allreduceTensors(*group_, parts);
  for (size_t i = first; i < end; ++i) buffers[ks[i].buffers[0]] = sums[i - first];
  if (kernelProfiling()) recordKernelTime(kernelLabel(ks[first]), secondsSince(started));
  return end;
}

const ir::LoopProgram &Layer::lastForwardLoops() const {
  if (!lastForward_) throw Error(fmt::format("layer {} has run no forward pass yet", name_));
  return lastForward_->loops;
}

const ir::LoopProgram &Layer::lastBackwardLoops() const {
  if (!lastBackward_) throw Error(fmt::format("layer {} has run no backward pass yet", name_));
  return lastBackward_->loops;
}

const ir::Program &Layer::gradientProgram() {
  if (!gradient_) {
    gradient_ = std::make_unique<GradientInfo>();
    gradient_->gradient = ir::Pipeline().backward(*symbols_, program_, hyper_,
                                                    {.fuse = options_.fuse, .distributed = group_ != nullptr});
  }
  return gradient_->gradient.program;
}

void Layer::releasePass() {
  lastBuffers_.clear();
  forwardRan_ = false;
}

std::map<std::string, Tensor> Layer::backward(const std::string &loss) {
  if (!forwardRan_)
    throw Error(fmt::format("layer {}: backward needs a forward pass first", name_), "call forward with the same inputs");
  auto shape = lastOutputShapes_.find(loss);
  if (shape == lastOutputShapes_.end()) {
    std::string names;
    for (const auto &[o, _] : lastOutputShapes_) names += (names.empty() ? "" : ", ") + o;
    throw Error(fmt::format("layer {} has no output '{}' to take a gradient of", name_, loss), "its outputs are " + names);
  }
  return backward({{loss, ones(shape->second, dtype(), device())}});
}

std::map<std::string, Tensor> Layer::backward(const std::map<std::string, Tensor> &outputGrads) {
  if (!forwardRan_)
    throw Error(fmt::format("layer {}: backward needs a forward pass first", name_), "call forward with the same inputs");
  const ir::Program &g = gradientProgram();
  const ir::Gradient &info = gradient_->gradient;
  std::map<std::string, Tensor> buffers;
  for (const std::string &s : info.saved) buffers[s] = lastBuffers_.at(s);
  for (const auto &[name, grad] : outputGrads) {
    auto seed = info.seedOf.find(name);
    if (seed == info.seedOf.end()) {
      std::string names;
      for (const auto &[o, _] : info.seedOf) names += (names.empty() ? "" : ", ") + o;
      throw Error(fmt::format("layer {} has no output '{}' to take a gradient of", name_, name), "its outputs are " + names);
    }
    const Shape &want = lastOutputShapes_.at(name);
    if (grad.shape() != want) {
      throw Error(fmt::format("{}layer {}: the gradient of output '{}' has shape {}, but the output has shape {}",
                              sourcePrefix(symbols_->find(name)), name_, name, shapeString(grad.shape()),
                              shapeString(want)));
    }
    buffers[seed->second] = grad.to(options_.dtype).to(options_.device);
  }
  ir::GradientBuckets buckets;
  if (averager_) {
    buckets.gradients = ir::parameterGradients(info, program_);
    buckets.firstBucketBytes = options_.firstBucketBytes;
    buckets.bucketBytes = options_.bucketBytes;
  }
  Compiled &c = compile(g, lastSizes_, compiledGrad_, ir::backwardStorage(info, program_, elemTypeOf(options_.dtype)),
                        buckets);
  lastBackward_ = &c;
  for (auto &[name, t] : buffers) t = t.reshape(c.shapes.at(name));
  for (const auto &[o, seed] : info.seedOf)
    if (!buffers.count(seed) && c.shapes.count(seed))
      buffers[seed] = Tensor(dtypeOf(c.loops.types.of(seed)), c.shapes.at(seed), options_.device);
  std::set<std::string> keep;
  for (const auto &[x, gname] : info.gradOf) keep.insert(gname);
  run(c, buffers, lastRandomSeed_, &keep);
  std::map<std::string, Tensor> grads;
  for (const auto &[x, gname] : info.gradOf) {
    const Tensor &t = buffers.at(gname);
    auto in = lastInputShapes_.find(x);
    grads[x] = in != lastInputShapes_.end() ? t.reshape(in->second) : t;
    if (isParameter(x)) {
      auto acc = accumulated_.find(x);
      if (acc == accumulated_.end()) accumulated_[x] = grads[x].reshape(t.shape()); // shares grads[x]'s storage
      else acc->second = add(acc->second, t);
    }
  }
  return grads;
}

std::map<std::string, Tensor> Layer::forward(const std::map<std::string, Tensor> &inputs) {
  // Errors about one input start where the layer declares it.
  for (const auto &[n, t] : inputs)
    if (t.dtype() != options_.dtype)
      throw Error(fmt::format("{}layer {}: input '{}' is {} but the layer runs in {}", sourcePrefix(symbols_->find(n)), name_, n,
                              dtypeName(t.dtype()), dtypeName(options_.dtype)),
                  "convert the input or create the layer with the matching dtype (--dtype)");
  if (!aliasRanks_.empty())
    for (const auto &[n, t] : inputs)
      if (std::find(aliasRanks_.begin(), aliasRanks_.end(), t.rank()) == aliasRanks_.end())
        throw Error(fmt::format("{}layer {}: input '{}' has shape {} ({} dimensions), but {} takes inputs with {} "
                                "dimensions",
                                sourcePrefix(symbols_->find(n)), name_, n, shapeString(t.shape()), t.rank(), name_,
                                aliasRanks_.size() == 1 ? std::to_string(aliasRanks_[0])
                                                        : fmt::format("{} or {}", aliasRanks_[0], aliasRanks_[1])),
                    "SyncBatchNorm accepts inputs of any rank from 2");
  // Errors that depend on the inputs name them; an empty one is marked, as a layer may refuse it.
  lastInputsText_.clear();
  for (const auto &[n, t] : inputs)
    lastInputsText_ += fmt::format("{}{} {}{}", lastInputsText_.empty() ? "" : ", ", n, shapeString(t.shape()),
                                   t.numel() == 0 ? " (no elements)" : "");
  SizeBinding binding = bindSizes(program_, *symbols_, inputs, name_, hyper_);
  Compiled &c = compile(program_, binding.values, compiled_, ir::forwardStorage(program_, elemTypeOf(options_.dtype)));
  lastForward_ = &c;

  std::map<std::string, Tensor> buffers;
  lastInputShapes_.clear();
  for (const auto &[n, t] : inputs) {
    buffers[n] = t.to(options_.device).reshape(c.shapes.at(n));
    lastInputShapes_[n] = t.shape();
  }
  for (const auto &[n, t] : params_) buffers[n] = t;
  // A new seed per pass, reproducible from the layer's seed.
  lastRandomSeed_ = static_cast<int64_t>(Rng(options_.seed, fmt::format("pass {}", passes_++)).next() >> 1);
  // What outlives the pass: outputs, buffers' new values and, once the backward pass is known,
  // what it reads; until then every temporary is kept (and none planned).
  std::set<std::string> keep;
  for (const std::string &o : outputNames()) keep.insert(o);
  for (const auto &[next, buffer] : program_.updates) keep.insert(next);
  if (gradient_) keep.insert(gradient_->gradient.saved.begin(), gradient_->gradient.saved.end());
  run(c, buffers, lastRandomSeed_, gradient_ ? &keep : nullptr);

  std::map<std::string, Tensor> outputs;
  for (const std::string &o : outputNames()) {
    // A variadic last dimension (Y: [B, C, L...]) expands back to the dimensions it collapsed.
    Shape shape;
    const TensorSymbol *sym = symbols_->find(o);
    const Shape &flat = c.shapes.at(o);
    for (size_t i = 0; i < flat.size(); ++i) {
      auto v = binding.variadicDims.find(sizeText(*sym->shape[i]));
      if (sym->expands[i] && v != binding.variadicDims.end())
        shape.insert(shape.end(), v->second.begin(), v->second.end());
      else
        shape.push_back(flat[i]);
    }
    outputs[o] = buffers.at(o).reshape(shape);
    lastOutputShapes_[o] = shape;
  }
  // Training passes leave the buffers' new values behind.
  for (const auto &[next, buffer] : program_.updates) params_[buffer] = buffers.at(next).clone().reshape(params_.at(buffer).shape());
  lastSizes_ = binding.values;
  // Kept for backward: what it reads, once it has been derived (until then, everything).
  // UpsampleConv2d's convolution before the pixel shuffle, or any output, goes at once.
  if (gradient_) {
    const std::vector<std::string> &saved = gradient_->gradient.saved;
    std::erase_if(buffers, [&](const auto &kv) { return std::find(saved.begin(), saved.end(), kv.first) == saved.end(); });
  }
  lastBuffers_ = std::move(buffers);
  forwardRan_ = true;
  return outputs;
}

} // namespace enc
