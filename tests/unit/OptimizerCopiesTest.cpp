// Layer::setParam and the host optimizers' copies: a value of the layer's dtype and device is
// shared, not copied; a host step copies each parameter once and leaves earlier state dicts as
// they were.
#include "OptimizerReference.h"

#include "runtime/Adam.h"
#include "runtime/Tensor.h"
#include "runtime/Optimizer.h"

#include <gtest/gtest.h>

namespace enc {
namespace {

using namespace enc::testing;

TEST(OptimizerCopies, SetParamSharesAValueOfTheLayersDtypeAndDevice) {
  Layer layer = linear64();
  Tensor same = vec({1, 2});
  layer.setParam("bias", same);
  EXPECT_EQ(layer.params().at("bias").data(), same.data());
  Tensor narrow = vec({3, 4}).to(DType::F32);
  layer.setParam("bias", narrow);
  EXPECT_NE(layer.params().at("bias").data(), narrow.data());
  EXPECT_EQ(layer.params().at("bias").dtype(), DType::F64);
  EXPECT_EQ(layer.params().at("bias").at(1), 4);
}

// A host step writes each parameter's new value into one copy (allocated once, handed to the
// layer without a second copy); a state dict taken before the step keeps the old values.
TEST(OptimizerCopies, AHostStepCopiesEachParameterOnce) {
  for (bool adam : {false, true}) {
    Layer layer = linear64();
    SGD sgd({.lr = 0.1, .momentum = 0.9});
    Adam adamOpt({.lr = 0.1});
    Optimizer &o = adam ? static_cast<Optimizer &>(adamOpt) : sgd;
    o.step(layer, gradsOf(kGrads[0])); // allocates the state
    std::map<std::string, Tensor> before = layer.stateDict();
    const double bias0 = before.at("bias").at(0);
    const std::map<std::string, Tensor> grads = gradsOf(kGrads[1]);
    resetAllocationStats();
    o.step(layer, grads);
    EXPECT_EQ(allocationStats().allocations, 2) << o.name() << ": weight and bias, once each";
    EXPECT_EQ(before.at("bias").at(0), bias0) << o.name();
    EXPECT_NE(layer.params().at("bias").at(0), bias0) << o.name();
  }
}

} // namespace
} // namespace enc
