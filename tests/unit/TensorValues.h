// Tensors to and from plain vectors of doubles, and the error measure the numeric tests compare
// them with.
#pragma once

#include "runtime/Tensor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace enc::testing {

// Every element of `t` (on any device, any dtype) as a double.
inline std::vector<double> valuesOf(const Tensor &t) {
  Tensor h = t.to(Device::CPU).to(DType::F64);
  std::vector<double> v(static_cast<size_t>(h.numel()));
  for (int64_t i = 0; i < h.numel(); ++i) v[static_cast<size_t>(i)] = h.at(i);
  return v;
}

// A host tensor of `shape` holding `v`, rounded to `dtype`.
inline Tensor tensorOf(const std::vector<double> &v, Shape shape, DType dtype = DType::F64) {
  Tensor t(DType::F64, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, v[static_cast<size_t>(i)]);
  return t.to(dtype);
}

// The largest |a - b| / (1 + |b|) over the elements; infinite where the sizes differ or one of
// two elements is NaN (both NaN count as equal).
inline double maxRelError(const std::vector<double> &a, const std::vector<double> &b) {
  const double inf = std::numeric_limits<double>::infinity();
  double worst = a.size() == b.size() ? 0 : inf;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      if (std::isnan(a[i]) != std::isnan(b[i])) worst = inf;
      continue;
    }
    worst = std::max(worst, std::abs(a[i] - b[i]) / (1 + std::abs(b[i])));
  }
  return worst;
}

} // namespace enc::testing
