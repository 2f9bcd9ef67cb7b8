// The scalar functions a .enc expression calls (exp, rsqrt, leaky_relu, rand, allreduce, ...):
// one row each in Intrinsics.cpp's table. Sema checks calls against it, IR folding, autodiff
// and both code generators dispatch on `Intrinsic` with a switch that names every function, so
// a function added here without its folding, derivative or CPU/CUDA code is a compile error
// (-Werror=switch), never a silent default. (select, min, max, pow, float and int are
// operators of the language, lowered to IR nodes of their own, not intrinsics.)
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace enc {

enum class Intrinsic : uint8_t {
  Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Abs, Relu, Sin, Cos, Floor, Ceil, LeakyRelu, Rand, Allreduce,
};

struct IntrinsicInfo {
  Intrinsic id;
  const char *name;
  int minArgs, maxArgs; // as written in .enc (rand: 1 to 4 indices; lowering appends the seed)
  // The blocked CPU schedules (compiler/TileContractions.cpp) widen it inside a contraction's
  // body and epilogue: a few vector instructions, no library call.
  bool widens;
  const char *signature; // for messages: "leaky_relu(x, slope)"
};

const std::vector<IntrinsicInfo> &intrinsics();
const IntrinsicInfo &intrinsicInfo(Intrinsic f);
const IntrinsicInfo *findIntrinsic(std::string_view name);

} // namespace enc
