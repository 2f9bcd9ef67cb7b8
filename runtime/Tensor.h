// A dense, contiguous (C-order) tensor with shared, reference-counted storage, in host memory or
// on the GPU (device memory from the GPU's caching allocator).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace enc {

// F16 (IEEE half) and BF16 (bfloat16) are storage types: 2 bytes an element, converted through float on
// access (see runtime/Float16.h).
enum class DType { F32, F64, F16, BF16 };

enum class Device { CPU, CUDA };
std::optional<Device> parseDevice(std::string_view name);

size_t dtypeSize(DType t);      // 4, 8, 2, 2
const char *dtypeName(DType t); // "f32", "f64", "f16", "bf16"
// Also accepts "float32"/"float", "float64"/"double", "float16"/"half" and "bfloat16".
std::optional<DType> parseDType(std::string_view name);
inline bool isHalfPrecision(DType t) { return t == DType::F16 || t == DType::BF16; }

using Shape = std::vector<int64_t>;
std::string shapeString(const Shape &s); // "[2, 3, 4]"
// The product of the dimensions; enc::Error when it does not fit in an int64_t.
int64_t shapeNumel(const Shape &s);
// The product of the dimensions, or nullopt when that of the nonzero ones does not fit in 64
// bits: whether a shape is too large does not depend on the order of its dimensions, as with
// NumPy, nor on a zero among them.
std::optional<int64_t> checkedNumel(const Shape &s);

// The size in bytes of a tensor of `shape` and `dtype` on `device`, or enc::Error naming `what` ("input
// 'X'", "layer Conv2d: parameter 'weight'") and the shape when it cannot exist: a negative dimension, an
// element count or byte size beyond int64_t, or on the host more bytes than the machine's memory. Every
// tensor is checked so (Tensor::empty); callers that know a tensor's name check first to say which.
size_t checkTensorSize(const std::string &what, const Shape &shape, DType dtype, Device device = Device::CPU);

// Host memory held by tensors in this process, for tests and reports (`peak` and `largest`
// since the last resetAllocationStats).
struct AllocationStats {
  int64_t currentBytes = 0;
  int64_t peakBytes = 0;
  int64_t largestBytes = 0; // the largest single tensor allocated
  int64_t allocations = 0;
};
AllocationStats allocationStats();
void resetAllocationStats();

class Tensor {
public:
  Tensor() = default;
  // Zero-filled storage (64-byte aligned on the host). A CUDA tensor needs a GPU (enc::Error
  // otherwise).
  Tensor(DType dtype, Shape shape, Device device = Device::CPU);
  // Storage left as it comes (reused memory; NaN-filled when ENC_POISON=1, on the GPU also
  // with ENC_CUDA_POISON=1).
  static Tensor empty(DType dtype, Shape shape, Device device);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool isCuda() const { return device_ == Device::CUDA; }
  const Shape &shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
  int64_t numel() const { return shapeNumel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtypeSize(dtype_); } // checked when made

  // The storage's address: a device address (CUdeviceptr) for a CUDA tensor.
  void *data() { return storage_.get(); }
  const void *data() const { return storage_.get(); }
  template <typename T> T *dataAs() { return static_cast<T *>(data()); }
  template <typename T> const T *dataAs() const { return static_cast<const T *>(data()); }

  // Element access by flat (C-order) index, converting through double; host tensors only. set() rounds to
  // the nearest value of the dtype, ties to even (f16/bf16: out-of-range values become ±Inf).
  double at(int64_t flat) const;
  void set(int64_t flat, double value);

  // Same storage, new shape with the same element count.
  Tensor reshape(Shape shape) const;
  // A tensor of `dtype` and `shape` in this one's storage, `byteOffset` bytes in (it keeps the
  // storage alive): the memory plan's temporaries live in one arena this way.
  Tensor view(size_t byteOffset, DType dtype, Shape shape) const;
  // Every byte 0xff: NaN in every dtype (ENC_POISON's fill), on the tensor's device.
  void poison();
  Tensor clone() const; // on the same device
  // Converts elementwise with round to nearest, ties to even (this tensor itself for the same dtype); a CUDA
  // tensor is converted on the host and copied back.
  Tensor to(DType dtype) const;
  // A copy on `device` (this tensor itself when it is there already).
  Tensor to(Device device) const;
  Tensor cpu() const { return to(Device::CPU); }

private:
  std::shared_ptr<std::byte> storage_;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  Shape shape_;

  void requireHost(const char *what) const;
};

} // namespace enc
