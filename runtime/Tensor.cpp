#include "runtime/Tensor.h"

#include "runtime/Float16.h"
#include "runtime/Gpu.h"
#include "runtime/HostMemory.h"
#include "support/Error.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>

#include <unistd.h>

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

std::optional<int64_t> checkedNumel(const Shape &s) {
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : s) {
    empty = empty || d == 0;
    if (d != 0 && __builtin_mul_overflow(n, d, &n)) return std::nullopt;
  }
  return empty ? 0 : n;
}

int64_t shapeNumel(const Shape &s) {
  std::optional<int64_t> n = checkedNumel(s);
  if (!n) throw Error(fmt::format("tensor shape {} has more elements than a 64-bit count holds", shapeString(s)));
  return *n;
}

namespace {

// Physical memory: a host tensor larger than this can never be used, whatever the allocator (with
// overcommit) would promise; asking fails at once with the tensor's name instead of much later.
uint64_t hostMemoryBytes() {
  static const uint64_t bytes = [] {
    long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page)
                                 : std::numeric_limits<uint64_t>::max();
  }();
  return bytes;
}

std::string gib(uint64_t bytes) { return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1 << 30)); }

} // namespace

size_t checkTensorSize(const std::string &what, const Shape &shape, DType dtype, Device device) {
  constexpr const char *kHint = "use smaller sizes: a smaller batch or input, fewer features or channels";
  for (int64_t d : shape)
    if (d < 0) throw Error(fmt::format("{} has a negative dimension in shape {}", what, shapeString(shape)));
  std::optional<int64_t> count = checkedNumel(shape);
  if (!count)
    throw Error(fmt::format("{} of shape {} is too large: its element count does not fit in 64 bits", what,
                            shapeString(shape)),
                kHint);
  int64_t numel = *count, bytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<int64_t>(dtypeSize(dtype)), &bytes))
    throw Error(fmt::format("{} of shape {} is too large: {} elements of {} do not fit in a 64-bit byte count", what,
                            shapeString(shape), numel, dtypeName(dtype)),
                kHint);
  if (device == Device::CPU && static_cast<uint64_t>(bytes) > hostMemoryBytes())
    throw Error(fmt::format("{} of shape {} needs {} bytes ({}), more than this machine's memory ({})", what,
                            shapeString(shape), bytes, gib(static_cast<uint64_t>(bytes)), gib(hostMemoryBytes())),
                kHint);
  return static_cast<size_t>(bytes);
}

namespace {
std::atomic<int64_t> gCurrent{0}, gPeak{0}, gLargest{0}, gCount{0};

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
  checkTensorSize("a tensor", t.shape_, dtype, device);
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

Tensor Tensor::view(size_t byteOffset, DType dtype, Shape shape) const {
  Tensor t;
  t.dtype_ = dtype;
  t.device_ = device_;
  t.shape_ = std::move(shape);
  size_t bytes = checkTensorSize("a view", t.shape_, dtype, device_);
  if (byteOffset > nbytes() || bytes > nbytes() - byteOffset)
    fail("a view of {} bytes at offset {} does not fit in a tensor of {} bytes", bytes, byteOffset, nbytes());
  t.storage_ = std::shared_ptr<std::byte>(storage_, storage_.get() + byteOffset);
  return t;
}

void Tensor::poison() {
  if (device_ == Device::CPU) std::memset(data(), 0xff, nbytes());
  else cuda::Gpu::require().fill(deviceAddress(*this), 0xff, nbytes());
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
