// Cases covering every shipped layer (sizes chosen to exercise split reductions, tiles and
// split-K on a GPU), with the helpers the layer suites share: seeded random inputs and the
// error relative to the largest magnitude of a reference.
#pragma once

#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Rng.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace enc::testing {

using Settings = std::map<std::string, std::string>;
using Tensors = std::map<std::string, Tensor>;

struct LayerCase {
  std::string layer;
  Settings settings;
  std::map<std::string, Shape> inputs;
  bool training = true;
  std::set<std::string> integerInputs; // class indices: values in [0, classes)
};

// At least one case per shipped layer (GpuLayerCases.CoversEveryShippedLayer checks it).
inline std::vector<LayerCase> layerCases() {
  return {
      {"LeakyReLU", {{"negative_slope", "0.2"}}, {{"X", {2, 3, 5}}}},
      {"ReLU", {}, {{"X", {4, 7}}}},
      {"Softmax", {}, {{"X", {3, 6, 4}}}},
      {"SyncBatchNorm", {{"num_features", "4"}}, {{"X", {3, 4, 5, 2}}}},
      {"SyncBatchNorm", {{"num_features", "4"}, {"activation", "leaky_relu"}}, {{"X", {2, 4, 7}}}},
      {"SyncBatchNorm", {{"num_features", "4"}}, {{"X", {3, 4, 5}}}, false},
      {"SyncBatchNorm", {{"num_features", "3"}}, {{"X", {64, 3, 33, 17}}}}, // long reductions
      {"DistSyncBatchNorm", {{"num_features", "4"}}, {{"X", {2, 4, 6}}}},
      {"Conv2d", {{"in_channels", "4"}, {"out_channels", "6"}, {"kernel_size", "3"}, {"padding", "1"}, {"groups", "2"}},
       {{"X", {2, 4, 7, 6}}}},
      {"Conv2d",
       {{"in_channels", "3"}, {"out_channels", "5"}, {"kernel_size", "3,2"}, {"stride", "2"}, {"padding", "1"}},
       {{"X", {2, 3, 9, 8}}}},
      {"UpsampleConv2d",
       {{"in_channels", "4"}, {"out_channels", "2"}, {"kernel_size", "3"}, {"padding", "1"}, {"scale_factor", "2"}},
       {{"X", {2, 4, 5, 5}}}},
      {"Encoding", {{"D", "6"}, {"K", "5"}}, {{"X", {2, 6, 3, 4}}}},
      {"GramMatrix", {}, {{"X", {2, 5, 4, 3}}}},
      {"Inspiration", {{"C", "6"}}, {{"X", {2, 6, 4, 5}}}},
      {"Linear", {{"in_features", "7"}, {"out_features", "5"}}, {{"X", {4, 7}}}},
      {"Linear", {{"in_features", "7"}, {"out_features", "5"}, {"bias", "false"}}, {{"X", {3, 7}}}},
      {"Flatten", {}, {{"X", {3, 2, 4}}}},
      {"L2Normalize", {}, {{"X", {3, 5, 4}}}},
      {"Sum", {{"dim", "1"}}, {{"X", {2, 5, 3}}}},
      {"Mean", {{"dim", "2"}}, {{"X", {2, 3, 4, 5}}}},
      {"CrossEntropyLoss", {}, {{"X", {4, 6}}, {"T", {4}}}, true, {"T"}},
      {"Dropout", {{"p", "0.3"}}, {{"X", {10, 100}}}},
      {"MaxPool2d", {{"kernel_size", "3"}, {"stride", "2"}, {"padding", "1"}}, {{"X", {2, 3, 9, 8}}}},
      {"AvgPool2d", {{"kernel_size", "2"}}, {{"X", {2, 3, 8, 6}}}},
      {"GlobalAvgPool2d", {}, {{"X", {2, 3, 5, 4}}}},
      // Reductions long enough to be split on the GPU (and fused with their siblings).
      {"GramMatrix", {}, {{"X", {2, 3, 40, 60}}}},
      {"Mean", {{"dim", "1"}}, {{"X", {2, 5000, 3}}}},
      {"Encoding", {{"D", "6"}, {"K", "5"}}, {{"X", {2, 6, 3000}}}},
      // Contractions big enough for shared-memory tiles, with partial tiles at the edges.
      {"GramMatrix", {}, {{"X", {2, 40, 12, 10}}}},
      {"GramMatrix", {}, {{"X", {1, 70, 9, 37}}}},
      {"Linear", {{"in_features", "37"}, {"out_features", "33"}}, {{"X", {70, 37}}}},
      {"Conv2d", {{"in_channels", "3"}, {"out_channels", "20"}, {"kernel_size", "3"}, {"padding", "1"}, {"stride", "2"}},
       {{"X", {2, 3, 17, 16}}}},
      {"Conv2d", {{"in_channels", "8"}, {"out_channels", "24"}, {"kernel_size", "3"}, {"padding", "1"}, {"groups", "2"}},
       {{"X", {2, 8, 9, 9}}}},
      // On the CPU: the weight gradient summed transposed (36 output channels), the input
      // gradient's stride phases of 20 columns one tile of two overlapping vectors.
      {"Conv2d", {{"in_channels", "5"}, {"out_channels", "36"}, {"kernel_size", "3"}, {"padding", "1"}, {"stride", "2"}},
       {{"X", {2, 5, 6, 40}}}},
      {"Inspiration", {{"C", "20"}}, {{"X", {2, 20, 5, 4}}}},
      // Few tiles over a long reduction: the contraction is split as well (split-K).
      {"GramMatrix", {}, {{"X", {1, 40, 64, 64}}}},
      {"Encoding", {{"D", "32"}, {"K", "20"}}, {{"X", {2, 32, 2500}}}},
      {"UpsampleConv2d",
       {{"in_channels", "4"}, {"out_channels", "8"}, {"kernel_size", "3"}, {"padding", "1"}, {"scale_factor", "2"}},
       {{"X", {2, 4, 6, 6}}}},
  };
}

inline std::shared_ptr<const Library> lib() {
  static auto l = Library::shipped();
  return l;
}

inline Tensor randomTensor(const Shape &shape, uint64_t seed, bool integer = false, int64_t classes = 1) {
  Tensor t(DType::F64, shape);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set(i, integer ? static_cast<double>(static_cast<int64_t>(rng.next() % static_cast<uint64_t>(classes)))
                     : rng.uniform(-1, 1));
  return t;
}

// max |a - b| / max(1, max |b|), over every element; NaN anywhere is infinitely wrong.
inline double relError(const Tensor &a, const Tensor &b) {
  Tensor x = a.cpu(), y = b.cpu();
  if (x.shape() != y.shape()) return INFINITY;
  double worst = 0, scale = 1;
  for (int64_t i = 0; i < y.numel(); ++i) scale = std::max(scale, std::abs(y.at(i)));
  for (int64_t i = 0; i < y.numel(); ++i) {
    double d = std::abs(x.at(i) - y.at(i));
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
  }
  return worst / scale;
}


inline std::string describe(const LayerCase &c) {
  std::string s = c.layer + " {";
  for (const auto &[k, v] : c.settings) s += " " + k + "=" + v;
  s += " }";
  for (const auto &[n, shape] : c.inputs) s += " " + n + shapeString(shape);
  return s + (c.training ? " training" : " eval");
}

} // namespace enc::testing
