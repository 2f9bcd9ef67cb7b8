#include "runtime/Tensor.h"

#include "runtime/Float16.h"
#include "runtime/Gpu.h"
#include "runtime/HostMemory.h"
#include "support/Error.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace enc {

size_t dtypeSize(DType t) {
  switch (t) {
  case DType::F32: return 4;
  case DType::F64: return 8;
  case DType::F16:
  case DType::BF16: return 2;
  }
  fail("invalid dtype {}", static_cast<int>(t));
}

const char *dtypeName(DType t) {
  switch (t) {
  case DType::F32: return "f32";
  case DType::F64: return "f64";
  case DType::F16: return "f16";
  case DType::BF16: return "bf16";
  }
  fail("invalid dtype {}", static_cast<int>(t));
}

std::optional<DType> parseDType(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "float") return DType::F32;
  if (name == "f64" || name == "float64" || name == "double") return DType::F64;
  if (name == "f16" || name == "float16" || name == "half") return DType::F16;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  return std::nullopt;
}

std::optional<Device> parseDevice(std::string_view name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda" || name == "gpu" || name == "cuda:0") return Device::CUDA;
  return std::nullopt;
}

std::string shapeString(const Shape &s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

int64_t shapeNumel(const Shape &s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

namespace {
std::atomic<int64_t> gCurrent{0}, gPeak{0}, gLargest{0}, gCount{0};

void checkShape(const Shape &shape) {
  for (int64_t d : shape)
    if (d < 0) fail("negative dimension in tensor shape {}", shapeString(shape));
}

cuda::CUdeviceptr deviceAddress(const Tensor &t) { return reinterpret_cast<cuda::CUdeviceptr>(t.data()); }

void raiseTo(std::atomic<int64_t> &a, int64_t v) {
  int64_t old = a.load();
  while (v > old && !a.compare_exchange_weak(old, v)) {
  }
}
} // namespace

AllocationStats allocationStats() { return {gCurrent.load(), gPeak.load(), gLargest.load(), gCount.load()}; }

void resetAllocationStats() {
  gPeak = gCurrent.load();
  gLargest = 0;
  gCount = 0;
}

Tensor::Tensor(DType dtype, Shape shape, Device device) {
  *this = empty(dtype, std::move(shape), device);
  if (device_ == Device::CUDA)
    cuda::Gpu::get()->fill(deviceAddress(*this), 0, nbytes());
  else
    std::memset(data(), 0, nbytes());
}

Tensor Tensor::empty(DType dtype, Shape shape, Device device) {
  Tensor t;
  t.dtype_ = dtype;
  t.device_ = device;
  t.shape_ = std::move(shape);
  checkShape(t.shape_);
  if (device == Device::CPU) {
    // From the host cache (64-byte aligned); the statistics count the bytes asked for.
    auto address = hostAllocator().allocate(t.nbytes());
    auto size = static_cast<int64_t>((t.nbytes() + 63) / 64 * 64);
    raiseTo(gPeak, gCurrent += size);
    raiseTo(gLargest, size);
    ++gCount;
    t.storage_ = std::shared_ptr<std::byte>(reinterpret_cast<std::byte *>(address), [size](std::byte *q) {
      gCurrent -= size;
      hostAllocator().release(reinterpret_cast<uint64_t>(q));
    });
    if (poisonHostMemory()) std::memset(t.data(), 0xff, t.nbytes()); // all-ones bytes: NaN in every dtype
    return t;
  }
  cuda::Gpu &gpu = cuda::Gpu::require();
  uint64_t address = gpu.allocator().allocate(t.nbytes());
  t.storage_ = std::shared_ptr<std::byte>(reinterpret_cast<std::byte *>(address),
                                          [&gpu](std::byte *q) { gpu.allocator().release(reinterpret_cast<uint64_t>(q)); });
  if (gpu.poisonFreshMemory()) gpu.fill(address, 0xff, t.nbytes()); // all-ones bytes: NaN in every dtype
  return t;
}

void Tensor::requireHost(const char *what) const {
  if (device_ != Device::CPU)
    throw Error(fmt::format("{} of a CUDA tensor (shape {}) from the host", what, shapeString(shape_)),
                "copy it to the CPU first: tensor.cpu()");
}

double Tensor::at(int64_t flat) const {
  requireHost("element access");
  switch (dtype_) {
  case DType::F32: return static_cast<double>(dataAs<float>()[flat]);
  case DType::F64: return dataAs<double>()[flat];
  case DType::F16: return static_cast<double>(halfBitsToFloat(dataAs<uint16_t>()[flat]));
  case DType::BF16: return static_cast<double>(bfloat16BitsToFloat(dataAs<uint16_t>()[flat]));
  }
  fail("invalid dtype {}", static_cast<int>(dtype_));
}

void Tensor::set(int64_t flat, double value) {
  requireHost("element access");
  switch (dtype_) {
  case DType::F32: dataAs<float>()[flat] = static_cast<float>(value); return;
  case DType::F64: dataAs<double>()[flat] = value; return;
  // One rounding from double (not double -> float -> half, which can misround near midpoints).
  case DType::F16: dataAs<uint16_t>()[flat] = doubleToHalfBits(value); return;
  case DType::BF16: dataAs<uint16_t>()[flat] = doubleToBFloat16Bits(value); return;
  }
}

Tensor Tensor::reshape(Shape shape) const {
  if (shapeNumel(shape) != numel())
    fail("cannot reshape a tensor of shape {} to {}", shapeString(shape_), shapeString(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  if (device_ == Device::CUDA) {
    Tensor t = empty(dtype_, shape_, Device::CUDA);
    cuda::Gpu::get()->copyOnDevice(deviceAddress(t), deviceAddress(*this), nbytes());
    return t;
  }
  Tensor t = empty(dtype_, shape_, Device::CPU);
  std::memcpy(t.data(), data(), nbytes());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  if (device_ != Device::CPU) return cpu().to(dtype).to(device_); // rare: conversion on the host
  Tensor t = empty(dtype, shape_, Device::CPU);
  for (int64_t i = 0, n = numel(); i < n; ++i) t.set(i, at(i));
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == device_ || !defined()) return *this;
  if (device == Device::CUDA) {
    Tensor t = empty(dtype_, shape_, Device::CUDA);
    cuda::Gpu::get()->copyToDevice(deviceAddress(t), data(), nbytes());
    return t;
  }
  Tensor t = empty(dtype_, shape_, Device::CPU);
  cuda::Gpu::get()->copyToHost(t.data(), deviceAddress(*this), nbytes());
  return t;
}

} // namespace enc
