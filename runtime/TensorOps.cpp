#include "runtime/TensorOps.h"

#include "runtime/DeviceOps.h"
#include "runtime/Float16.h"
#include "runtime/Gpu.h"
#include "runtime/Rng.h"
#include "support/Error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace enc {
namespace {

// How each dtype's elements are stored: the raw type, and reading to / rounding from double.
struct F32Elems {
  using Raw = float;
  static double get(float x) { return x; }
  static float put(double v) { return static_cast<float>(v); }
};
struct F64Elems {
  using Raw = double;
  static double get(double x) { return x; }
  static double put(double v) { return v; }
};
struct F16Elems {
  using Raw = uint16_t;
  static double get(uint16_t x) { return halfBitsToFloat(x); }
  static uint16_t put(double v) { return doubleToHalfBits(v); }
};
struct BF16Elems {
  using Raw = uint16_t;
  static double get(uint16_t x) { return bfloat16BitsToFloat(x); }
  static uint16_t put(double v) { return doubleToBFloat16Bits(v); }
};

// Calls f(Elems{}) for `dtype`'s element type: loops over raw arrays, no per-element switch.
template <typename F> void withElems(DType dtype, F &&f) {
  switch (dtype) {
  case DType::F32: return f(F32Elems{});
  case DType::F64: return f(F64Elems{});
  case DType::F16: return f(F16Elems{});
  case DType::BF16: return f(BF16Elems{});
  }
}

void requireDefined(const char *op, const Tensor &t, const char *which = "tensor") {
  if (!t.defined())
    throw Error(fmt::format("{}: the {} is undefined (a default-constructed Tensor)", op, which),
                "create it first, e.g. enc::zeros(shape)");
}

// Element-wise operands: same shape, dtype and device.
void checkSame(const char *op, const Tensor &a, const Tensor &b) {
  requireDefined(op, a, "first tensor");
  requireDefined(op, b, "second tensor");
  if (a.shape() != b.shape())
    throw Error(fmt::format("{}: shapes differ: {} and {}", op, shapeString(a.shape()), shapeString(b.shape())),
                "element-wise operations need equal shapes (there is no broadcasting); reshape() or full() one");
  if (a.dtype() != b.dtype())
    throw Error(fmt::format("{}: dtypes differ: {} and {} (shape {})", op, dtypeName(a.dtype()), dtypeName(b.dtype()),
                            shapeString(a.shape())),
                fmt::format("convert one with .to(enc::DType::...), e.g. to {}", dtypeName(a.dtype())));
  if (a.device() != b.device())
    throw Error(fmt::format("{}: one tensor is on the GPU, the other on the CPU (shape {})", op, shapeString(a.shape())),
                "move one with .cpu() or .to(enc::Device::CUDA)");
}

// A host tensor filled by `gen(i)` for every flat index i in order, then moved to `device`.
template <typename Gen> Tensor generate(const Shape &shape, DType dtype, Device device, Gen &&gen) {
  Tensor t = Tensor::empty(dtype, shape, Device::CPU);
  withElems(dtype, [&](auto e) {
    using E = decltype(e);
    auto *out = t.dataAs<typename E::Raw>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) out[i] = E::put(gen(i));
  });
  return t.to(device);
}

// `layer` of runtime/DeviceOps.cpp on CUDA operands A (and B), flattened; its output Y in a's shape.
Tensor onDevice(const char *layer, const Tensor &a, const Tensor *b, const std::map<std::string, double> &params = {}) {
  std::map<std::string, Tensor> in = {{"A", device::flat(a)}};
  if (b) in["B"] = device::flat(*b);
  return device::run(layer, a.dtype(), in, {}, params).outputs.at("Y").reshape(a.shape());
}

template <typename Op>
Tensor binary(const char *op, const Tensor &a, const Tensor &b, Op &&f, const char *deviceLayer = nullptr) {
  checkSame(op, a, b);
  if (a.isCuda() && a.numel() > 0 && deviceLayer) return onDevice(deviceLayer, a, &b);
  const Tensor x = a.cpu(), y = b.cpu();
  Tensor out = Tensor::empty(a.dtype(), a.shape(), Device::CPU);
  withElems(a.dtype(), [&](auto e) {
    using E = decltype(e);
    using Raw = typename E::Raw;
    const Raw *xs = x.dataAs<Raw>(), *ys = y.dataAs<Raw>();
    Raw *zs = out.dataAs<Raw>();
    for (int64_t i = 0, n = out.numel(); i < n; ++i) zs[i] = E::put(f(E::get(xs[i]), E::get(ys[i])));
  });
  return out.to(a.device());
}

template <typename T> Tensor fromPointer(const T *data, const Shape &shape, DType dtype, Device device) {
  if (!data && shapeNumel(shape) > 0) fail("fromHost: null data for a tensor of shape {}", shapeString(shape));
  return generate(shape, dtype, device, [&](int64_t i) { return static_cast<double>(data[i]); });
}

template <typename T> Tensor fromValues(const std::vector<T> &values, const Shape &shape, DType dtype, Device device) {
  int64_t n = shapeNumel(shape);
  if (static_cast<int64_t>(values.size()) != n)
    throw Error(fmt::format("fromHost: {} values for shape {} ({} elements)", values.size(), shapeString(shape), n),
                "give exactly one value per element, in C order");
  return fromPointer(values.data(), shape, dtype, device);
}

} // namespace

Tensor zeros(const Shape &shape, DType dtype, Device device) { return Tensor(dtype, shape, device); }
Tensor ones(const Shape &shape, DType dtype, Device device) { return full(shape, 1, dtype, device); }

Tensor full(const Shape &shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(dtype, shape, device);
  fill(t, value);
  return t;
}

Tensor uniform(const Shape &shape, double lo, double hi, uint64_t seed, DType dtype, Device device) {
  if (!(lo <= hi)) fail("uniform: the range [{}, {}) is empty or not a number", lo, hi);
  Rng rng(seed);
  return generate(shape, dtype, device, [&](int64_t) { return rng.uniform(lo, hi); });
}

Tensor normal(const Shape &shape, double mean, double std, uint64_t seed, DType dtype, Device device) {
  if (!(std >= 0)) fail("normal: standard deviation {} must be >= 0", std);
  Rng rng(seed);
  return generate(shape, dtype, device, [&](int64_t) { return rng.normal(mean, std); });
}

Tensor fromHost(const float *data, const Shape &shape, DType dtype, Device device) {
  return fromPointer(data, shape, dtype, device);
}
Tensor fromHost(const double *data, const Shape &shape, DType dtype, Device device) {
  return fromPointer(data, shape, dtype, device);
}
Tensor fromHost(const std::vector<float> &values, const Shape &shape, DType dtype, Device device) {
  return fromValues(values, shape, dtype, device);
}
Tensor fromHost(const std::vector<double> &values, const Shape &shape, DType dtype, Device device) {
  return fromValues(values, shape, dtype, device);
}

template <typename T> std::vector<T> toVector(const Tensor &t) {
  requireDefined("toVector", t);
  const Tensor h = t.cpu();
  std::vector<T> out(static_cast<size_t>(h.numel()));
  withElems(h.dtype(), [&](auto e) {
    using E = decltype(e);
    const auto *xs = h.dataAs<typename E::Raw>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(E::get(xs[i]));
  });
  return out;
}
template std::vector<float> toVector<float>(const Tensor &);
template std::vector<double> toVector<double>(const Tensor &);

Tensor add(const Tensor &a, const Tensor &b) {
  return binary("add", a, b, [](double x, double y) { return x + y; }, "Add");
}
Tensor sub(const Tensor &a, const Tensor &b) {
  return binary("sub", a, b, [](double x, double y) { return x - y; }, "Sub");
}
Tensor mul(const Tensor &a, const Tensor &b) {
  return binary("mul", a, b, [](double x, double y) { return x * y; }, "Mul");
}
Tensor scale(const Tensor &a, double s) {
  requireDefined("scale", a);
  if (a.isCuda() && a.numel() > 0) return onDevice("Scale", a, nullptr, {{"s", s}});
  return binary("scale", a, a, [s](double x, double) { return x * s; });
}

void addInPlace(Tensor &dst, const Tensor &src, double alpha) {
  checkSame("addInPlace", dst, src);
  if (dst.isCuda()) {
    if (dst.numel() > 0) copyInto(dst, onDevice("AddScaled", dst, &src, {{"s", alpha}}));
    return;
  }
  withElems(dst.dtype(), [&](auto e) {
    using E = decltype(e);
    using Raw = typename E::Raw;
    Raw *ds = dst.dataAs<Raw>();
    const Raw *ss = src.dataAs<Raw>();
    for (int64_t i = 0, n = dst.numel(); i < n; ++i) ds[i] = E::put(E::get(ds[i]) + alpha * E::get(ss[i]));
  });
}

void fill(Tensor &dst, double value) {
  requireDefined("fill", dst);
  withElems(dst.dtype(), [&](auto e) {
    using E = decltype(e);
    const auto raw = E::put(value);
    const int64_t n = dst.numel();
    if (!dst.isCuda()) {
      auto *ds = dst.dataAs<typename E::Raw>();
      for (int64_t i = 0; i < n; ++i) ds[i] = raw;
      return;
    }
    // On the GPU: a byte fill when every byte of the value is the same (0 is), else the value
    // copied once and then doubled by copies on the device.
    if (n == 0) return;
    cuda::Gpu &gpu = cuda::Gpu::require();
    const auto base = reinterpret_cast<cuda::CUdeviceptr>(dst.data());
    unsigned char bytes[sizeof raw];
    std::memcpy(bytes, &raw, sizeof raw);
    if (std::all_of(bytes, bytes + sizeof raw, [&](unsigned char b) { return b == bytes[0]; }))
      return gpu.fill(base, bytes[0], dst.nbytes());
    gpu.copyToDevice(base, &raw, sizeof raw);
    for (int64_t done = 1; done < n;) {
      const int64_t count = std::min(done, n - done);
      gpu.copyOnDevice(base + static_cast<cuda::CUdeviceptr>(done) * sizeof raw, base, static_cast<size_t>(count) * sizeof raw);
      done += count;
    }
  });
}

void copyInto(Tensor &dst, const Tensor &src) {
  requireDefined("copyInto", dst, "destination");
  requireDefined("copyInto", src, "source");
  if (dst.shape() != src.shape())
    throw Error(fmt::format("copyInto: the destination has shape {}, the source {}", shapeString(dst.shape()),
                            shapeString(src.shape())),
                "copyInto needs equal shapes; reshape() the source if only the shape differs");
  const Tensor s = src.to(dst.dtype());
  if (s.data() == dst.data() && s.device() == dst.device()) return; // the same storage
  size_t bytes = dst.nbytes();
  if (bytes == 0) return;
  auto address = [](const Tensor &t) { return reinterpret_cast<cuda::CUdeviceptr>(t.data()); };
  if (!dst.isCuda()) {
    const Tensor h = s.cpu();
    std::memmove(dst.data(), h.data(), bytes);
  } else if (s.isCuda()) {
    cuda::Gpu::get()->copyOnDevice(address(dst), address(s), bytes);
  } else {
    cuda::Gpu::get()->copyToDevice(address(dst), s.data(), bytes);
  }
}

double sum(const Tensor &a) {
  requireDefined("sum", a);
  if (a.isCuda() && a.numel() > 0) // the sum on the GPU, in f32 (f64 for f64); one number comes back
    return device::run("Total", a.dtype(), {{"X", device::flat(a)}}).buffers.at("total").cpu().at(0);
  const Tensor h = a.cpu();
  double total = 0;
  withElems(h.dtype(), [&](auto e) {
    using E = decltype(e);
    const auto *xs = h.dataAs<typename E::Raw>();
    for (int64_t i = 0, n = h.numel(); i < n; ++i) total += E::get(xs[i]);
  });
  return total;
}

double mean(const Tensor &a) {
  requireDefined("mean", a);
  int64_t n = a.numel();
  return n == 0 ? std::numeric_limits<double>::quiet_NaN() : sum(a) / static_cast<double>(n);
}

std::vector<int64_t> argmax(const Tensor &a, int dim) {
  requireDefined("argmax", a);
  const int rank = a.rank();
  if (rank == 0) fail("argmax: a scalar (shape []) has no dimension to search");
  if (dim < -rank || dim >= rank)
    throw Error(fmt::format("argmax: dimension {} is out of range for shape {}", dim, shapeString(a.shape())),
                fmt::format("use 0 to {} (or -1 for the last)", rank - 1));
  if (dim < 0) dim += rank;
  const int64_t count = a.dim(dim);
  if (count == 0) fail("argmax: dimension {} of shape {} is empty", dim, shapeString(a.shape()));
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; ++i) outer *= a.dim(i);
  for (int i = dim + 1; i < rank; ++i) inner *= a.dim(i);
  std::vector<int64_t> out(static_cast<size_t>(outer * inner));
  // On the GPU when the indices are exact in its arithmetic (f32: to 2^24): only they come back.
  if (a.isCuda() && !out.empty() && (a.dtype() == DType::F64 || count <= (int64_t{1} << 24))) {
    const Tensor index = device::run("Argmax", a.dtype(), {{"X", a.reshape({outer, count, inner})}},
                                     {{"outer", std::to_string(outer)}, {"inner", std::to_string(inner)}})
                             .buffers.at("index")
                             .cpu();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int64_t>(index.at(static_cast<int64_t>(i)));
    return out;
  }
  const Tensor h = a.cpu();
  withElems(h.dtype(), [&](auto e) {
    using E = decltype(e);
    const auto *xs = h.dataAs<typename E::Raw>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t in = 0; in < inner; ++in) {
        const auto *row = xs + o * count * inner + in; // element k at row[k * inner]
        int64_t best = 0;
        double bestValue = E::get(row[0]);
        for (int64_t k = 1; k < count && !std::isnan(bestValue); ++k) {
          double x = E::get(row[k * inner]);
          if (x > bestValue || std::isnan(x)) best = k, bestValue = x;
        }
        out[static_cast<size_t>(o * inner + in)] = best;
      }
  });
  return out;
}

} // namespace enc
