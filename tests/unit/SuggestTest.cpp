// "Did you mean ...?": which name a misspelt one is taken for (support/Suggest.h).
#include "support/Suggest.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

using enc::didYouMean;
using enc::nearestName;

namespace {

const std::vector<std::string> kLayers = {"LeakyReLU", "ReLU",       "Softmax",     "SyncBatchNorm", "DistSyncBatchNorm",
                                          "Conv2d",    "Linear",     "Encoding",    "GramMatrix",    "BatchNorm1d",
                                          "BatchNorm2d", "MaxPool2d", "AvgPool2d"};

TEST(Suggest, CaseEditsAndAbbreviations) {
  // Another case wins over everything else.
  EXPECT_EQ(nearestName("conv2d", kLayers), "Conv2d");
  EXPECT_EQ(nearestName("CONV2D", kLayers), "Conv2d");
  EXPECT_EQ(nearestName("batchnorm2d", kLayers), "BatchNorm2d");
  // A few edits.
  EXPECT_EQ(nearestName("Encodng", kLayers), "Encoding");
  EXPECT_EQ(nearestName("Linaer", kLayers), "Linear");
  EXPECT_EQ(nearestName("Conv2", kLayers), "Conv2d");
  EXPECT_EQ(nearestName("paddin", {"stride", "padding", "dilation"}), "padding");
  // An abbreviation, too many edits away to be a misspelling.
  EXPECT_EQ(nearestName("SyncBN", kLayers), "SyncBatchNorm");
  EXPECT_EQ(nearestName("GramM", kLayers), "GramMatrix");
  // Nothing close.
  EXPECT_EQ(nearestName("Transformer", kLayers), std::nullopt);
  EXPECT_EQ(nearestName("", kLayers), std::nullopt);
  EXPECT_EQ(nearestName("x", {}), std::nullopt);
}

TEST(Suggest, DidYouMeanText) {
  EXPECT_EQ(didYouMean("evl", {"check", "emit", "eval"}), "; did you mean 'eval'?");
  EXPECT_EQ(didYouMean("nonsense", {"check", "emit", "eval"}), "");
}

} // namespace
