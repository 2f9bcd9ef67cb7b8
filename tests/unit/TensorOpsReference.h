// What the TensorOps suites compare with: naive loops over Tensor::at/set, values rounded as
// set() rounds, and the dtypes every operation is checked in.
#pragma once

#include "runtime/Tensor.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace enc::testing {

inline const DType kDTypes[] = {DType::F32, DType::F64, DType::F16, DType::BF16};

// `v` rounded to `dtype` the way Tensor::set rounds.
inline double rounded(double v, DType dtype) {
  Tensor t(dtype, {1});
  t.set(0, v);
  return t.at(0);
}

// A host tensor of varied values (some negative, not all representable in 16 bits), set element by element.
inline Tensor varied(DType dtype, const Shape &shape, double offset) {
  Tensor t(dtype, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, std::sin(static_cast<double>(i) * 1.7 + offset) * 3.1);
  return t;
}

inline std::string messageOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const Error &e) {
    return e.what();
  }
  return "(no error)";
}

// The naive argmax: for each position of the other dimensions, the first index of the maximum.
inline std::vector<int64_t> naiveArgmax(const Tensor &a, int dim) {
  int64_t outer = 1, inner = 1, n = a.dim(dim);
  for (int i = 0; i < dim; ++i) outer *= a.dim(i);
  for (int i = dim + 1; i < a.rank(); ++i) inner *= a.dim(i);
  std::vector<int64_t> out;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      int64_t best = 0;
      for (int64_t k = 1; k < n; ++k)
        if (a.at((o * n + k) * inner + in) > a.at((o * n + best) * inner + in)) best = k;
      out.push_back(best);
    }
  return out;
}

} // namespace enc::testing
