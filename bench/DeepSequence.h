// Deep sequences of layers, for compile time against depth (bench_networks.cpp's `sequence`
// mode, bench/RESULTS.md) and for the tests that keep it linear (DeepSequenceTest.cpp).
// Each source defines layer Deep, input X: [B, 8] (convs: [B, 4, H, W]), output Y, with `depth`
// layers in a row:
//   flat    one layer (no network) of `depth` pointwise statements T1[b, c] = relu(X[b, c] + 1), ...
//   calls   a network of `depth` Linear sub-layers, each declared and called in a statement of its own:
//           Y1 = relu(lin1(X)), Y2 = relu(lin2(Y1)), ...
//   repeat  a network of one repeated residual block, [Block(C=C) for i < depth], each block
//           Y = relu(lin(X)) + X
//   convs   the same with convolutions: each block Y = relu(bn(conv(X))) + X, a 3x3 convolution
//           and a batch norm (depth counts blocks)
#pragma once

#include <fmt/format.h>

#include <string>

namespace enc::bench {

inline constexpr const char *kSequenceKinds[] = {"flat", "calls", "repeat", "convs"};

// The source of `kind` at `depth` (>= 1); empty for an unknown kind.
inline std::string deepSequenceSource(const std::string &kind, int depth) {
  std::string s;
  if (kind == "flat") {
    s += "layer Deep() {\n  forward(X: [B, C]) -> Y: [B, C] {\n";
    std::string prev = "X";
    for (int i = 1; i <= depth; ++i) {
      std::string name = i == depth ? "Y" : fmt::format("T{}", i);
      s += fmt::format("    {}[b, c] = relu({}[b, c] + {})\n", name, prev, i % 7 + 1);
      prev = name;
    }
    return s + "  }\n}\n";
  }
  if (kind == "calls") {
    s += "layer Deep(C: int = 8) {\n";
    for (int i = 1; i <= depth; ++i) s += fmt::format("  lin{} = Linear(in_features=C, out_features=C)\n", i);
    s += "  forward(X: [B, C]) -> Y {\n";
    std::string prev = "X";
    for (int i = 1; i <= depth; ++i) {
      std::string name = i == depth ? "Y" : fmt::format("Y{}", i);
      s += fmt::format("    {} = relu(lin{}({}))\n", name, i, prev);
      prev = name;
    }
    return s + "  }\n}\n";
  }
  if (kind == "repeat")
    return fmt::format(R"(layer Block(C: int) {{
  lin = Linear(in_features=C, out_features=C)
  forward(X: [B, C]) -> Y {{
    Y = relu(lin(X)) + X
  }}
}}

layer Deep(C: int = 8, N: int = {}) {{
  blocks = [Block(C=C) for i < N]
  forward(X: [B, C]) -> Y {{
    Y = blocks(X)
  }}
}}
)",
                       depth);
  if (kind == "convs")
    return fmt::format(R"(layer ConvBlock(C: int) {{
  conv = Conv2d(in_channels=C, out_channels=C, kernel_size=3, padding=1, bias=false)
  bn = SyncBatchNorm(num_features=C)
  forward(X: [B, C, H, W]) -> Y {{
    Y = relu(bn(conv(X))) + X
  }}
}}

layer Deep(C: int = 4, N: int = {}) {{
  blocks = [ConvBlock(C=C) for i < N]
  forward(X: [B, C, H, W]) -> Y {{
    Y = blocks(X)
  }}
}}
)",
                       depth);
  return "";
}

} // namespace enc::bench
