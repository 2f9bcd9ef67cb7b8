// The memory plan (runtime/MemoryPlan.cpp): temporaries alive at the same time never share
// bytes, dead ones are reused, and a network's planned passes compute what unplanned ones do.
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/MemoryPlan.h"

#include <gtest/gtest.h>

namespace enc {
namespace {

ir::Kernel kernel(std::vector<std::string> buffers) {
  ir::Kernel k;
  k.buffers = std::move(buffers);
  return k;
}

TEST(MemoryPlan, OverlappingLifetimesNeverShareBytesAndDeadOnesAreReused) {
  ir::LoopProgram loops;
  // X given, Y kept; A, B, C, D temporaries: A [0, 1], B [1, 3], C [2, 3], D [4, 4].
  loops.kernels = {kernel({"A", "X"}), kernel({"B", "A"}), kernel({"C", "B"}), kernel({"Y", "B", "C"}),
                   kernel({"D", "Y"})};
  std::map<std::string, Shape> shapes = {{"X", {100}}, {"Y", {100}}, {"A", {1000}}, {"B", {300}},
                                         {"C", {1000}}, {"D", {2000}}};
  MemoryPlan plan = planMemory(loops, shapes, {"X"}, {"Y"});
  ASSERT_EQ(plan.slots.size(), 4u);
  std::map<std::string, MemoryPlan::Slot> by;
  for (const auto &s : plan.slots) by[s.tensor] = s;
  EXPECT_EQ(by["A"].first, 0u);
  EXPECT_EQ(by["A"].last, 1u);
  EXPECT_EQ(by["B"].last, 3u);
  EXPECT_EQ(by["D"].first, 4u);
  for (const auto &a : plan.slots)
    for (const auto &b : plan.slots) {
      if (a.tensor >= b.tensor) continue;
      bool together = a.first <= b.last && b.first <= a.last;
      bool overlap = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
      EXPECT_FALSE(together && overlap) << a.tensor << " and " << b.tensor;
      EXPECT_EQ(a.offset % 64, 0u);
    }
  // 4000 + 1216 + 4000 + 8000 bytes apart; D (alone at kernel 4) and A or C (dead by then) share.
  EXPECT_EQ(plan.unplannedBytes, 4032u + 1216u + 4032u + 8000u);
  EXPECT_LE(plan.arenaBytes, 8000u + 1216u);
  EXPECT_LT(plan.arenaBytes, plan.unplannedBytes);
}

TEST(MemoryPlan, PlannedNetworkPassesMatchTheFirstUnplannedOne) {
  auto lib = Library::fromSource("net.enc", R"(
layer Net(C: int = 4) {
  conv1 = Conv2d(in_channels=C, out_channels=C, kernel_size=3, padding=1)
  bn1 = SyncBatchNorm(num_features=C, momentum=0)
  conv2 = Conv2d(in_channels=C, out_channels=C, kernel_size=3, padding=1)
  bn2 = SyncBatchNorm(num_features=C, momentum=0)
  forward(X: [B, C, H, W]) -> Y {
    Y = relu(bn2(conv2(relu(bn1(conv1(X))))) + X)
  }
}
)");
  Layer net(lib, "Net", {}, {.dtype = DType::F64});
  Tensor x(DType::F64, {2, 4, 6, 6}), gy(DType::F64, {2, 4, 6, 6});
  for (int64_t i = 0; i < x.numel(); ++i) {
    x.set(i, std::sin(0.3 * static_cast<double>(i)));
    gy.set(i, std::cos(0.7 * static_cast<double>(i)));
  }
  Tensor y0 = net.forward({{"X", x}}).at("Y").clone(); // unplanned: backward not derived yet
  Tensor g0 = net.backward({{"Y", gy}}).at("X").clone();
  EXPECT_EQ(net.forwardMemory().unplannedBytes, 0u);
  // Planned from here on (ENC_POISON=1 in the tests fills each temporary's bytes with NaN first).
  Tensor y1 = net.forward({{"X", x}}).at("Y");
  Tensor g1 = net.backward({{"Y", gy}}).at("X");
  for (int64_t i = 0; i < y0.numel(); ++i) {
    EXPECT_EQ(y0.at(i), y1.at(i));
    EXPECT_EQ(g0.at(i), g1.at(i));
  }
  Layer::PassMemory f = net.forwardMemory(), b = net.backwardMemory();
  // A training forward pass keeps nearly everything for backward; the backward pass's
  // temporaries (adjoints) die one after the other.
  EXPECT_GT(b.unplannedBytes, 0u);
  EXPECT_LT(b.arenaBytes, b.unplannedBytes);
  EXPECT_LE(f.arenaBytes, f.unplannedBytes);
}

} // namespace
} // namespace enc
