// compiler/SlideWindowSums.cpp: which sums it re-indexes by the window read's positions, and
// which it leaves (the numerics of the convolutions it changes are CpuTilingTest's
// Conv2dForwardBackwardAtOddSizes).
#include "compiler/Passes.h"
#include "compiler/TensorProgram.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace enc {
namespace {

const ir::Definition *definitionOf(const ir::Program &p, const std::string &tensor) {
  for (const ir::Definition &d : p.defs)
    if (d.tensor == tensor) return &d;
  return nullptr;
}

ir::Program convGradient(const std::map<std::string, std::string> &sets) {
  Layer l(Library::shipped(), "Conv2d", sets, {});
  return ir::specialize(l.gradientProgram(), {{"B", ir::intImm(2)}, {"H", ir::intImm(20)}, {"W", ir::intImm(24)}});
}

const std::map<std::string, std::string> kConv = {
    {"in_channels", "3"}, {"out_channels", "8"}, {"kernel_size", "3"}, {"padding", "1"}};

// grad_weight[o, c, kh, kw] = sum(b, h, w: grad_Y[b, o, h, w] * X[b, c, h + kh - 1, w + kw - 1])
// becomes a sum over X's rows h_in, grad_Y read at h_in - kh + 1.
TEST(SlideWindowSums, ConvWeightGradientSumsOverInputRows) {
  ir::Program p = convGradient(kConv);
  ir::Program slid = ir::slideWindowSums(p);
  const ir::Definition *d = definitionOf(slid, "grad_weight");
  ASSERT_NE(d, nullptr) << ir::printProgram(slid);
  std::string text = ir::print(d->value);
  EXPECT_NE(text.find("h_in"), std::string::npos) << text;
  EXPECT_NE(text.find("grad_Y[b, o, h_in - kh + 1, w]"), std::string::npos) << text;
  EXPECT_NE(text.find("[b, c, h_in, w + kw - 1]"), std::string::npos) << text;
  ASSERT_EQ(d->value->rvars.size(), 3u);
  EXPECT_EQ(d->value->rvars[1].name, "h_in");
  EXPECT_EQ(ir::print(d->value->rvars[1].extent), "20"); // X's rows
  // Nothing else changes: the forward's and the input gradient's sums stay.
  for (const ir::Definition &other : slid.defs)
    if (other.tensor != "grad_weight") EXPECT_EQ(ir::print(other.value).find("_in"), std::string::npos) << ir::print(other.value);
}

// Where h's positions are not exactly the plain read's dimension (a sum over part of it), the
// reads past h's range would add terms: the sum is left as it is.
TEST(SlideWindowSums, LeavesASumOverPartOfThePlainReadsDimension) {
  ir::Program p = convGradient(kConv);
  for (ir::Definition &d : p.defs)
    if (d.tensor == "grad_weight") {
      std::vector<ir::ReduceVar> rvars = d.value->rvars;
      rvars[1].extent = ir::intImm(19);
      d.value = ir::reduce(ir::ReduceOp::Sum, rvars, d.value->args[0]);
    }
  ir::Program slid = ir::slideWindowSums(p);
  const ir::Definition *d = definitionOf(slid, "grad_weight");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(ir::print(d->value).find("h_in"), std::string::npos) << ir::print(d->value);
}

// Dilated taps (h + 2 kh - 2) and strided rows (2 h + kh - 1) are not a unit shift: left.
TEST(SlideWindowSums, LeavesDilatedAndStridedWindows) {
  for (const char *option : {"dilation", "stride"}) {
    std::map<std::string, std::string> sets = kConv;
    sets[option] = "2";
    ir::Program slid = ir::slideWindowSums(convGradient(sets));
    const ir::Definition *d = definitionOf(slid, "grad_weight");
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(ir::print(d->value).find("_in"), std::string::npos) << option << ": " << ir::print(d->value);
  }
}

} // namespace
} // namespace enc
