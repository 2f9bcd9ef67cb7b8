// The ResNet-style block stack of issue 14's bench: N x (Conv-BN-ReLU, Conv-BN, + X, ReLU), run
// forward and backward either as one network (the Stack layer, compiled whole) or as the same
// layers each a Layer of its own, on the CPU (bench_networks.cpp) or the GPU (bench_gpu.cpp).
#pragma once

#include <enc/enc.h>

#include <memory>
#include <string>
#include <vector>

namespace enc::bench {

// Residual blocks and a stack of N of them.
inline constexpr const char *kStackSource = R"(
layer Residual(C: int) {
  conv1 = Conv2d(in_channels=C, out_channels=C, kernel_size=3, padding=1, bias=false)
  bn1 = SyncBatchNorm(num_features=C)
  conv2 = Conv2d(in_channels=C, out_channels=C, kernel_size=3, padding=1, bias=false)
  bn2 = SyncBatchNorm(num_features=C)
  forward(X: [B, C, H, W]) -> Y {
    F = relu(bn1(conv1(X)))
    Y = relu(bn2(conv2(F)) + X)
  }
}

layer Stack(C: int = 64, N: int = 2) {
  blocks = [Residual(C=C) for i < N]
  forward(X: [B, C, H, W]) -> Y {
    Y = blocks(X)
  }
}
)";

// One way to run the stack: pass() runs forward and backward once on inputs made at
// construction; kernels() counts the kernels of the last pass.
class BlockStack {
public:
  virtual ~BlockStack() = default;
  virtual void pass() = 0;
  virtual size_t kernels() const = 0;
};

using Settings = std::map<std::string, std::string>;

inline Tensor stackInput(const Shape &shape, uint64_t seed, Device device) {
  return uniform(shape, -1, 1, seed, DType::F32).to(device);
}

// The Stack layer of `lib` (which holds kStackSource), compiled whole.
class WholeStack : public BlockStack {
public:
  WholeStack(std::shared_ptr<const Library> lib, int64_t b, int64_t c, int64_t hw, int n, Device device)
      : net_(std::move(lib), "Stack", Settings{{"C", std::to_string(c)}, {"N", std::to_string(n)}}, options(device)),
        x_(stackInput({b, c, hw, hw}, 1, device)), gy_(stackInput({b, c, hw, hw}, 2, device)) {}
  void pass() override {
    net_.forward({{"X", x_}});
    net_.backward({{"Y", gy_}});
  }
  size_t kernels() const override {
    return net_.lastForwardLoops().kernels.size() + net_.lastBackwardLoops().kernels.size();
  }

private:
  Layer net_;
  Tensor x_, gy_;
  static LayerOptions options(Device device) {
    LayerOptions o;
    o.device = device;
    return o;
  }
};

// The same computation with every layer a Layer of its own: the glue (relu, the residual add)
// in the .enc activations and a one-line AddRelu layer, the gradients' sum by TensorOps' add.
class SeparateStack : public BlockStack {
public:
  SeparateStack(int64_t b, int64_t c, int64_t hw, int n, Device device)
      : x_(stackInput({b, c, hw, hw}, 1, device)), gy_(stackInput({b, c, hw, hw}, 2, device)) {
    auto shipped = Library::shipped();
    auto glue = Library::fromSource("glue.enc", R"(
layer AddRelu() {
  forward(A: [B, C, H, W], R: [B, C, H, W]) -> Y: [B, C, H, W] {
    Y[b, c, h, w] = relu(A[b, c, h, w] + R[b, c, h, w])
  }
}
)");
    LayerOptions o;
    o.device = device;
    const Settings conv = {{"in_channels", std::to_string(c)}, {"out_channels", std::to_string(c)},
                           {"kernel_size", "3"}, {"padding", "1"}, {"bias", "false"}};
    const Settings bn = {{"num_features", std::to_string(c)}};
    for (int i = 0; i < n; ++i) {
      Block k;
      k.conv1 = std::make_unique<Layer>(shipped, "Conv2d", conv, o);
      k.bn1 = std::make_unique<Layer>(shipped, "SyncBatchNorm", bn, o);
      k.relu = std::make_unique<Layer>(shipped, "ReLU", Settings{}, o);
      k.conv2 = std::make_unique<Layer>(shipped, "Conv2d", conv, o);
      k.bn2 = std::make_unique<Layer>(shipped, "SyncBatchNorm", bn, o);
      k.addRelu = std::make_unique<Layer>(glue, "AddRelu", Settings{}, o);
      blocks_.push_back(std::move(k));
    }
  }
  void pass() override {
    Tensor h = x_;
    for (Block &k : blocks_) {
      Tensor f = k.relu->forward({{"X", k.bn1->forward({{"X", k.conv1->forward({{"X", h}}).at("Y")}}).at("Y")}}).at("Y");
      Tensor g = k.bn2->forward({{"X", k.conv2->forward({{"X", f}}).at("Y")}}).at("Y");
      h = k.addRelu->forward({{"A", g}, {"R", h}}).at("Y");
    }
    Tensor g = gy_;
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
      auto ga = it->addRelu->backward({{"Y", g}});
      Tensor gf = it->conv2->backward({{"Y", it->bn2->backward({{"Y", ga.at("A")}}).at("X")}}).at("X");
      Tensor gx =
          it->conv1->backward({{"Y", it->bn1->backward({{"Y", it->relu->backward({{"Y", gf}}).at("X")}}).at("X")}}).at("X");
      g = add(gx, ga.at("R"));
    }
  }
  size_t kernels() const override {
    size_t n = 0;
    for (const Block &k : blocks_)
      for (const Layer *l : {k.conv1.get(), k.bn1.get(), k.relu.get(), k.conv2.get(), k.bn2.get(), k.addRelu.get()})
        n += l->lastForwardLoops().kernels.size() + l->lastBackwardLoops().kernels.size();
    return n; // not counting the gradients' adds (host loops on the CPU)
  }

private:
  struct Block {
    std::unique_ptr<Layer> conv1, bn1, relu, conv2, bn2, addRelu;
  };
  std::vector<Block> blocks_;
  Tensor x_, gy_;
};

} // namespace enc::bench
