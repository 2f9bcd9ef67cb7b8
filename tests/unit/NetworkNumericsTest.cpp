// NetworkNumerics: a residual block compiled whole equals the same layers run one by one as separate
// Layers, in f64, forward, every gradient and the running statistics; the element-wise glue between
// them (relu, the residual add) is computed here in plain loops.
#include "Networks.h"

#include "compiler/Pipeline.h"
#include "compiler/codegen/cuda/CudaCodegen.h"
#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Nvrtc.h"
#include "runtime/Tensor.h"
#include "support/Error.h"

#include "ErrorTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;

TEST(NetworkNumerics, ResidualBlockEqualsItsLayersRunOneByOne) {
  Layer net(networks(), "Block", {{"inplanes", "3"}, {"planes", "4"}, {"stride", "2"}}, f64());
  auto shipped = Library::shipped();
  Layer conv1(shipped, "Conv2d", {{"in_channels", "3"}, {"out_channels", "4"}, {"kernel_size", "3"}, {"stride", "2"},
                                  {"padding", "1"}, {"bias", "false"}}, f64());
  Layer conv2(shipped, "Conv2d", {{"in_channels", "4"}, {"out_channels", "4"}, {"kernel_size", "3"}, {"padding", "1"},
                                  {"bias", "false"}}, f64());
  Layer ds0(shipped, "Conv2d", {{"in_channels", "3"}, {"out_channels", "4"}, {"kernel_size", "1"}, {"stride", "2"},
                                {"bias", "false"}}, f64());
  Layer bn1(shipped, "SyncBatchNorm", {{"num_features", "4"}}, f64());
  Layer bn2(shipped, "SyncBatchNorm", {{"num_features", "4"}}, f64());
  Layer ds1(shipped, "SyncBatchNorm", {{"num_features", "4"}}, f64());
  std::map<std::string, Layer *> parts = {{"conv1", &conv1}, {"conv2", &conv2}, {"downsample.0", &ds0},
                                          {"bn1", &bn1},     {"bn2", &bn2},     {"downsample.1", &ds1}};
  // Same weights everywhere: the network's, with the batch norms' affine parameters made non-trivial.
  uint64_t seed = 1;
  for (auto &[prefix, layer] : parts)
    for (const auto &[name, value] : layer->params()) {
      std::string full = prefix + "." + name;
      ASSERT_TRUE(net.params().count(full)) << full;
      Tensor v = layer->isParameter(name) ? random(value.shape(), ++seed, 0.5, 1.5) : net.params().at(full);
      net.setParam(full, v);
      layer->setParam(name, v);
    }

  Tensor x = random({2, 3, 6, 5}, 100);
  Tensor y = net.forward({{"X", x}}).at("Y");
  // One by one.
  Tensor a = conv1.forward({{"X", x}}).at("Y");
  Tensor b = bn1.forward({{"X", a}}).at("Y");
  Tensor f = map2(b, b, [](double v, double) { return std::max(v, 0.0); });
  Tensor c = conv2.forward({{"X", f}}).at("Y");
  Tensor g = bn2.forward({{"X", c}}).at("Y");
  Tensor d = ds0.forward({{"X", x}}).at("Y");
  Tensor e = ds1.forward({{"X", d}}).at("Y");
  Tensor s = map2(g, e, [](double p, double q) { return p + q; });
  Tensor ref = map2(s, s, [](double v, double) { return std::max(v, 0.0); });
  ASSERT_EQ(y.shape(), (Shape{2, 4, 3, 3}));
  EXPECT_LT(maxDiff(y, ref), 1e-12);
  EXPECT_GT(maxAbs(ref), 0.1);

  // Backward of L = sum(Y * G).
  Tensor gy = random(y.shape(), 200);
  Tensors grads = net.backward({{"Y", gy}});
  Tensor gs = map2(gy, s, [](double gv, double v) { return v > 0 ? gv : 0; });
  Tensors gBn2 = bn2.backward({{"Y", gs}});
  Tensors gConv2 = conv2.backward({{"Y", gBn2.at("X")}});
  Tensor gb = map2(gConv2.at("X"), b, [](double gv, double v) { return v > 0 ? gv : 0; });
  Tensors gBn1 = bn1.backward({{"Y", gb}});
  Tensors gConv1 = conv1.backward({{"Y", gBn1.at("X")}});
  Tensors gDs1 = ds1.backward({{"Y", gs}});
  Tensors gDs0 = ds0.backward({{"Y", gDs1.at("X")}});
  Tensor gx = map2(gConv1.at("X"), gDs0.at("X"), [](double p, double q) { return p + q; });
  EXPECT_LT(maxDiff(grads.at("X"), gx), 1e-11);
  std::map<std::string, Tensors *> partGrads = {{"conv1", &gConv1}, {"conv2", &gConv2}, {"downsample.0", &gDs0},
                                                {"bn1", &gBn1},     {"bn2", &gBn2},     {"downsample.1", &gDs1}};
  for (auto &[prefix, pg] : partGrads)
    for (const auto &[name, value] : *pg) {
      if (name == "X") continue;
      ASSERT_TRUE(grads.count(prefix + "." + name)) << prefix << "." << name;
      EXPECT_LT(maxDiff(grads.at(prefix + "." + name), value), 1e-11) << prefix << "." << name;
    }
  // Running statistics after one training pass.
  for (auto &[prefix, layer] : parts)
    for (const auto &[name, value] : layer->params())
      if (!layer->isParameter(name))
        EXPECT_LT(maxDiff(net.params().at(prefix + "." + name), value), 1e-13) << prefix << "." << name;
}

} // namespace
} // namespace enc
