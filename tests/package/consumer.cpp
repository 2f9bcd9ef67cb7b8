// Uses encc's installed runtime API: a shipped layer and one of its own, forward and backward,
// with the results checked against the definitions. Prints "ok" and exits 0 when they agree.
#include <enc/enc.h>

#include <cmath>
#include <cstdio>

int main() {
  try {
    // y = 3 x^2, defined here; dy/dx = 6 x.
    auto mine = enc::Library::fromSource("mine.enc", R"(layer Cube() {
  forward(X: [N]) -> Y: [N] { Y[i] = 3.0 * X[i] * X[i] }
})");
    enc::Layer cube(mine, "Cube", {}, enc::LayerOptions{enc::DType::F64});
    enc::Tensor x(enc::DType::F64, {4}), dy(enc::DType::F64, {4});
    for (int64_t i = 0; i < 4; ++i) {
      x.set(i, 0.5 * static_cast<double>(i) - 1);
      dy.set(i, 1.0 + static_cast<double>(i));
    }
    enc::Tensor y = cube.forward({{"X", x}}).at("Y");
    enc::Tensor dx = cube.backward({{"Y", dy}}).at("X");
    for (int64_t i = 0; i < 4; ++i)
      if (std::abs(y.at(i) - 3 * x.at(i) * x.at(i)) > 1e-12 || std::abs(dx.at(i) - 6 * x.at(i) * dy.at(i)) > 1e-12) {
        std::printf("wrong at %lld\n", static_cast<long long>(i));
        return 1;
      }
    // A shipped layer: the installed package finds the layer library.
    enc::Layer relu(enc::Library::shipped(), "ReLU", {}, enc::LayerOptions{enc::DType::F64});
    enc::Tensor r = relu.forward({{"X", x}}).at("Y");
    for (int64_t i = 0; i < 4; ++i)
      if (r.at(i) != (x.at(i) > 0 ? x.at(i) : 0.0)) {
        std::printf("relu wrong at %lld\n", static_cast<long long>(i));
        return 1;
      }
    std::printf("ok\n");
    return 0;
  } catch (const enc::Error &e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
}
