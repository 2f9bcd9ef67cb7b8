// Tensor creation, element-wise arithmetic and reductions for the code around layers (training
// loops, data, metrics), so that callers need no loops over elements:
//
//   Tensor x = enc::normal({64, 2}, 0, 1, /*seed=*/1);          // f32 on the CPU by default
//   Tensor w = enc::fromHost(values.data(), {2, 3}, DType::F64);
//   enc::addInPlace(w, g, -lr);                                  // w -= lr * g
//   double loss = enc::mean(enc::mul(d, d));
//   std::vector<int64_t> predicted = enc::argmax(logits);        // along the last dimension
//
// Every dtype (f32, f64, f16, bf16). Element-wise operations need operands of the same shape
// (there is no broadcasting), dtype and device; an enc::Error names both.
//
// Host tensors: elements are read as double, computed in double and rounded once to the
// result's dtype (to nearest, ties to even), so f16/bf16 results are correctly rounded; sums
// accumulate in double.
//
// CUDA tensors: add, sub, mul, scale, addInPlace, fill (so full, ones), copyInto of one dtype,
// sum, mean and argmax run on the GPU (runtime/DeviceOps.h: compiled once per element count and
// dtype), computing in f32 (f64 for f64): equal to the host's results to rounding; sum/mean
// accumulate in f32 (f64) and return one number, argmax the indices. uniform, normal and
// fromHost draw on the host and copy; a dtype conversion goes through the host (Tensor::to).
#pragma once

#include "runtime/Tensor.h"

#include <cstdint>
#include <vector>

namespace enc {

// ---- creation (C order; `device` Device::CUDA needs a GPU) ----
Tensor zeros(const Shape &shape, DType dtype = DType::F32, Device device = Device::CPU);
Tensor ones(const Shape &shape, DType dtype = DType::F32, Device device = Device::CPU);
Tensor full(const Shape &shape, double value, DType dtype = DType::F32, Device device = Device::CPU);
// Deterministic for a seed (runtime/Rng.h's splitmix64, drawn in C order, so the same on every
// platform): uniform in [lo, hi), and normal (Box-Muller) with mean and standard deviation `std`.
Tensor uniform(const Shape &shape, double lo, double hi, uint64_t seed, DType dtype = DType::F32,
               Device device = Device::CPU);
Tensor normal(const Shape &shape, double mean, double std, uint64_t seed, DType dtype = DType::F32,
              Device device = Device::CPU);
// A tensor holding shapeNumel(shape) values read from `data` (host memory), converted to `dtype`.
Tensor fromHost(const float *data, const Shape &shape, DType dtype = DType::F32, Device device = Device::CPU);
Tensor fromHost(const double *data, const Shape &shape, DType dtype = DType::F64, Device device = Device::CPU);
// The same from a vector, whose size must be the shape's element count.
Tensor fromHost(const std::vector<float> &values, const Shape &shape, DType dtype = DType::F32,
                Device device = Device::CPU);
Tensor fromHost(const std::vector<double> &values, const Shape &shape, DType dtype = DType::F64,
                Device device = Device::CPU);
// The elements in C order, on the host (T: float or double).
template <typename T> std::vector<T> toVector(const Tensor &t);

// ---- element-wise: new tensors, on the operands' device ----
Tensor add(const Tensor &a, const Tensor &b);
Tensor sub(const Tensor &a, const Tensor &b);
Tensor mul(const Tensor &a, const Tensor &b);
Tensor scale(const Tensor &a, double s); // a * s

// ---- in place: `dst`'s storage changes, so every Tensor sharing it sees the new values ----
void addInPlace(Tensor &dst, const Tensor &src, double alpha = 1); // dst += alpha * src
void fill(Tensor &dst, double value);
// dst = src, converting the dtype; either may be on either device.
void copyInto(Tensor &dst, const Tensor &src);

// ---- reductions ----
double sum(const Tensor &a);  // 0 for an empty tensor
double mean(const Tensor &a); // NaN for an empty tensor, as torch's
// The index of the largest element along `dim` (negative counts from the end) for each position
// of the other dimensions, in C order: for logits [N, C], N class indices. Indices are returned
// as int64_t rather than as a tensor because tensors hold floating point (f32 is exact only to
// 2^24), and callers compare them with labels. The first of equal maxima wins; NaN counts as the
// largest (as torch.argmax).
std::vector<int64_t> argmax(const Tensor &a, int dim = -1);

} // namespace enc
