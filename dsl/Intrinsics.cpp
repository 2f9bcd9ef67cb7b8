#include "dsl/Intrinsics.h"

#include "support/InternalError.h"

namespace enc {

namespace {

using I = Intrinsic;
const std::vector<IntrinsicInfo> kIntrinsics = {
    {I::Exp, "exp", 1, 1, false, "exp(x)"},
    {I::Log, "log", 1, 1, false, "log(x)"},
    {I::Sqrt, "sqrt", 1, 1, true, "sqrt(x)"},
    {I::Rsqrt, "rsqrt", 1, 1, true, "rsqrt(x)"},
    {I::Tanh, "tanh", 1, 1, false, "tanh(x)"},
    {I::Sigmoid, "sigmoid", 1, 1, false, "sigmoid(x)"},
    {I::Abs, "abs", 1, 1, true, "abs(x)"},
    {I::Relu, "relu", 1, 1, true, "relu(x)"},
    {I::Sin, "sin", 1, 1, false, "sin(x)"},
    {I::Cos, "cos", 1, 1, false, "cos(x)"},
    {I::Floor, "floor", 1, 1, false, "floor(x)"},
    {I::Ceil, "ceil", 1, 1, false, "ceil(x)"},
    {I::LeakyRelu, "leaky_relu", 2, 2, true, "leaky_relu(x, slope)"},
    {I::Rand, "rand", 1, 4, false, "rand(i, ...)"},
    {I::Allreduce, "allreduce", 1, 1, false, "allreduce(x)"},
};

} // namespace

const std::vector<IntrinsicInfo> &intrinsics() { return kIntrinsics; }

const IntrinsicInfo &intrinsicInfo(Intrinsic f) {
  for (const IntrinsicInfo &i : kIntrinsics)
    if (i.id == f) return i;
  internalError("intrinsic {} has no row in dsl/Intrinsics.cpp", static_cast<int>(f));
}

const IntrinsicInfo *findIntrinsic(std::string_view name) {
  for (const IntrinsicInfo &i : kIntrinsics)
    if (name == i.name) return &i;
  return nullptr;
}

} // namespace enc
