// Helpers the subcommands share: option pairs, libraries, random inputs, summaries.
#include "tools/encc/Commands.h"

#include "runtime/Rng.h"
#include "support/Error.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <string_view>

namespace enc::cli {

// NAME=VALUE pairs from repeated options.
std::map<std::string, std::string> splitPairs(const std::vector<std::string> &items, const char *option) {
  std::map<std::string, std::string> out;
  for (const std::string &item : items) {
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error(fmt::format("{} expects NAME=VALUE, got '{}'", option, item),
                  fmt::format("e.g. {} {}", option, std::string(option) == "--set" ? "K=32" : "X=input.npy"));
    std::string name = item.substr(0, eq);
    // A tensor's value is a file or random:...; "" is none (hyper-parameters say what they expect).
    const std::string opt = option;
    if (eq + 1 == item.size() && (opt == "--input" || opt == "--param" || opt == "--grad")) {
      std::string also = opt == "--param" ? "" : fmt::format(" or {} {}=random:2,3", opt, name);
      throw Error(fmt::format("{} {}=: the value is missing", opt, name), fmt::format("e.g. {} {}=FILE.npy{}", opt, name, also));
    }
    if (out.count(name)) throw Error(fmt::format("{} {} is given twice", option, name));
    out[name] = item.substr(eq + 1);
  }
  return out;
}

std::shared_ptr<const Library> loadLibrary(const std::string &file) {
  return file.empty() ? Library::shipped() : Library::fromFile(file);
}

DType parseDTypeOption(const std::string &s) {
  auto d = parseDType(s);
  if (!d) throw Error(fmt::format("unknown dtype '{}'", s), "use f32, f64, f16 or bf16 (f16/bf16: f32 arithmetic, 16-bit tensors)");
  return *d;
}

// "--input X=random:2,3,4,5": uniform in [-1, 1), from the seed and the input's name. There is at
// least one dimension, and each is a non-negative integer (no empty ones, as "random:3," has).
Tensor randomTensor(const std::string &dims, DType dtype, uint64_t seed, const std::string &name) {
  auto bad = [&]() -> int64_t {
    std::string option = name.starts_with("grad:") ? "--grad " + name.substr(5) : "--input " + name;
    throw Error(fmt::format("{}: bad shape 'random:{}'", option, dims),
                "write its dimensions after 'random:', each a non-negative integer: e.g. X=random:2,64,8,8");
  };
  Shape shape;
  std::string_view rest = dims;
  for (;;) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    int64_t v = -1;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || p != item.data() + item.size() || v < 0) bad();
    shape.push_back(v);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return randomTensor(shape, dtype, seed, name);
}

Tensor randomTensor(const Shape &shape, DType dtype, uint64_t seed, const std::string &name) {
  checkTensorSize(fmt::format("random input '{}'", name), shape, dtype);
  Tensor t(dtype, shape);
  Rng rng(seed, "input:" + name);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, rng.uniform(-1, 1));
  return t;
}

std::string summary(const Tensor &t) {
  if (t.numel() == 0) return "no elements";
  double lo = 0, hi = 0, sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = t.at(i);
    lo = i ? std::min(lo, v) : v;
    hi = i ? std::max(hi, v) : v;
    sum += v;
  }
  return fmt::format("min {:.6g}  max {:.6g}  mean {:.6g}", lo, hi, sum / static_cast<double>(t.numel()));
}

} // namespace enc::cli
