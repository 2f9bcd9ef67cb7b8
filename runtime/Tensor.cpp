#include "runtime/Tensor.h"

#include "support/Error.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace enc {

size_t dtypeSize(DType t) { return t == DType::F32 ? 4 : 8; }

const char *dtypeName(DType t) { return t == DType::F32 ? "f32" : "f64"; }

std::optional<DType> parseDType(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "float") return DType::F32;
  if (name == "f64" || name == "float64" || name == "double") return DType::F64;
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

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  for (int64_t d : shape_)
    if (d < 0) fail("negative dimension in tensor shape {}", shapeString(shape_));
  size_t bytes = nbytes();
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void *p = std::aligned_alloc(64, rounded);
  if (!p) fail("out of memory allocating {} bytes for a tensor of shape {}", bytes, shapeString(shape_));
  std::memset(p, 0, rounded);
  auto size = static_cast<int64_t>(rounded);
  raiseTo(gPeak, gCurrent += size);
  raiseTo(gLargest, size);
  ++gCount;
  storage_ = std::shared_ptr<std::byte>(static_cast<std::byte *>(p), [size](std::byte *q) {
    gCurrent -= size;
    std::free(q);
  });
}

double Tensor::at(int64_t flat) const {
  return dtype_ == DType::F32 ? static_cast<double>(dataAs<float>()[flat]) : dataAs<double>()[flat];
}

void Tensor::set(int64_t flat, double value) {
  if (dtype_ == DType::F32)
    dataAs<float>()[flat] = static_cast<float>(value);
  else
    dataAs<double>()[flat] = value;
}

Tensor Tensor::reshape(Shape shape) const {
  if (shapeNumel(shape) != numel())
    fail("cannot reshape a tensor of shape {} to {}", shapeString(shape_), shapeString(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(dtype_, shape_);
  std::memcpy(t.data(), data(), nbytes());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t(dtype, shape_);
  for (int64_t i = 0, n = numel(); i < n; ++i) t.set(i, at(i));
  return t;
}

} // namespace enc
