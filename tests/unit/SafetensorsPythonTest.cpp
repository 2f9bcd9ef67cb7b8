// Safetensors interop with an independent numpy-only implementation of the format
// (tests/python/safetensors_np.py): each side reads what the other writes.
#include "SafetensorsFiles.h"

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"
#include "support/Error.h"

#include "CliTestSupport.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

using namespace enc;
using namespace enc::testing;

namespace {

class SafetensorsPython : public SafetensorsDir {
protected:
  void SetUp() override {
    SafetensorsDir::SetUp();
    python_ = pythonWithNumpy();
  }
  // Runs `script` with tests/python importable; argv[1] is the test's directory, then `args`.
  int runPython(const std::string &script, const std::string &args = "") {
    std::string file = path("script.py");
    writeFile(file, "import sys\nsys.path.insert(0, '" ENC_TEST_DIR "/python')\n" + script);
    return std::system(fmt::format("{} '{}' '{}' {}", *python_, file, dir_.string(), args).c_str());
  }
  std::optional<std::string> python_;
};

#define REQUIRE_NUMPY()                                                                                        \
  if (!python_) GTEST_SKIP() << "numpy is not importable from python3 or /usr/bin/python3 (apt-get install python3-numpy)"

// The formulas both sides compute: grid[i] = 0.5 i - 3, and per channel c of a 3-channel BatchNorm:
// weight 1 + c/4 (F32), bias c/8 - 1/2 (F64), running_mean c/10 - 0.3 (F16), running_var 4/3 + c/2 (BF16).
double weightOf(int c) { return 1 + c / 4.0; }
double biasOf(int c) { return c / 8.0 - 0.5; }
double meanOf(int c) { return c / 10.0 - 0.3; }
double varOf(int c) { return 4.0 / 3.0 + c / 2.0; }
// A value as a tensor of `dtype` stores it (numpy rounds BF16 from float32, so we do too).
double stored(double v, DType dtype) {
  Tensor t(dtype == DType::BF16 ? DType::F32 : dtype, {1});
  t.set(0, v);
  return t.to(dtype).at(0);
}

TEST_F(SafetensorsPython, ReadsWhatNumpyWrites) {
  REQUIRE_NUMPY();
  ASSERT_EQ(runPython(R"(
import numpy as np, safetensors_np as st
d = sys.argv[1]
c = np.arange(3)
bn = {"weight": (1 + c / 4).astype(np.float32), "bias": (c / 8 - 0.5).astype(np.float64),
      "running_mean": (c / 10 - 0.3).astype(np.float16), "running_var": ("BF16", (4 / 3 + c / 2).astype(np.float32)),
      "num_batches_tracked": np.array(7, dtype=np.int64)}
st.save_file(bn, f"{d}/bn.safetensors", metadata={"format": "pt"})
model = {"bn." + k: v for k, v in bn.items()}
model["grid"] = (np.arange(24, dtype=np.float32) * 0.5 - 3).reshape(2, 3, 4)
model["scalar"] = np.array(2.5)
model["empty"] = np.zeros((0, 3), dtype=np.float32)
st.save_file(model, f"{d}/model.safetensors", metadata={"format": "pt", "epoch": "3"})
)"),
            0);

  SafetensorsFile model = readSafetensorsFile(path("model.safetensors"),
                                              [](const std::string &n) { return n.ends_with(".num_batches_tracked"); });
  EXPECT_EQ(model.skipped, std::vector<std::string>{"bn.num_batches_tracked"});
  EXPECT_EQ(model.metadata, (std::map<std::string, std::string>{{"epoch", "3"}, {"format", "pt"}}));
  const Tensor &grid = model.tensors.at("grid");
  EXPECT_EQ(grid.dtype(), DType::F32);
  ASSERT_EQ(grid.shape(), (Shape{2, 3, 4}));
  for (int64_t i = 0; i < 24; ++i) EXPECT_EQ(grid.at(i), 0.5 * static_cast<double>(i) - 3) << i;
  EXPECT_EQ(model.tensors.at("scalar").dtype(), DType::F64);
  EXPECT_EQ(model.tensors.at("scalar").shape(), Shape{});
  EXPECT_EQ(model.tensors.at("scalar").at(0), 2.5);
  EXPECT_EQ(model.tensors.at("empty").shape(), (Shape{0, 3}));
  EXPECT_EQ(model.tensors.at("bn.running_var").dtype(), DType::BF16);

  auto layer = batchNorm();
  Layer::StateKeys keys = layer->loadState(path("bn.safetensors"));
  EXPECT_TRUE(keys.missing.empty() && keys.unexpected.empty());
  std::map<std::string, Tensor> state = layer->stateDict();
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(state.at("weight").at(c), stored(weightOf(c), DType::F32)) << c;
    EXPECT_EQ(state.at("bias").at(c), stored(biasOf(c), DType::F32)) << c;
    EXPECT_EQ(state.at("running_mean").at(c), stored(meanOf(c), DType::F16)) << c;
    EXPECT_EQ(state.at("running_var").at(c), stored(varOf(c), DType::BF16)) << c;
  }
}

TEST_F(SafetensorsPython, NumpyReadsWhatEnccWrites) {
  REQUIRE_NUMPY();
  std::map<std::string, Tensor> tensors;
  Tensor grid(DType::F32, {2, 3, 4});
  for (int64_t i = 0; i < 24; ++i) grid.set(i, 0.5 * static_cast<double>(i) - 3);
  tensors["layer1.0.grid"] = grid;
  Tensor w(DType::F64, {3}), b(DType::F16, {3}), v(DType::F32, {3});
  for (int c = 0; c < 3; ++c) w.set(c, weightOf(c)), b.set(c, biasOf(c)), v.set(c, varOf(c));
  v = v.to(DType::BF16); // through f32, as the Python side rounds
  tensors["w64"] = w;
  tensors["b16"] = b;
  tensors["vbf16"] = v;
  tensors["scalar"] = Tensor(DType::F64, {});
  tensors["scalar"].set(0, 2.5);
  tensors["empty"] = Tensor(DType::F32, {0, 3});
  writeSafetensors(path("encc.safetensors"), tensors, {{"format", "pt"}});

  // A trained layer's state: Python checks the running statistics against values this test passes.
  auto layer = batchNorm();
  trainOnce(*layer);
  layer->saveState(path("bn.safetensors"));
  Tensor mean = layer->stateDict().at("running_mean"), var = layer->stateDict().at("running_var");
  std::string args = fmt::format("{:.17g} {:.17g} {:.17g} {:.17g} {:.17g} {:.17g}", mean.at(0), mean.at(1), mean.at(2),
                                 var.at(0), var.at(1), var.at(2));

  EXPECT_EQ(runPython(R"(
import numpy as np, safetensors_np as st
d = sys.argv[1]
expected = [float(a) for a in sys.argv[2:8]]
t, meta = st.load_file(f"{d}/encc.safetensors")
c = np.arange(3)
bf16 = lambda a: (np.asarray(a, np.float32).view(np.uint32) + 0x7FFF + ((np.asarray(a, np.float32).view(np.uint32) >> 16) & 1)) >> 16 << 16
checks = [
  ("metadata", meta == {"format": "pt"}),
  ("names", sorted(t) == ["b16", "empty", "layer1.0.grid", "scalar", "vbf16", "w64"]),
  ("grid", t["layer1.0.grid"].dtype == np.float32 and t["layer1.0.grid"].shape == (2, 3, 4)
           and np.array_equal(t["layer1.0.grid"].ravel(), np.arange(24, dtype=np.float32) * 0.5 - 3)),
  ("w64", t["w64"].dtype == np.float64 and np.array_equal(t["w64"], 1 + c / 4)),
  ("b16", t["b16"].dtype == np.float16 and np.array_equal(t["b16"], (c / 8 - 0.5).astype(np.float16))),
  ("vbf16", np.array_equal(t["vbf16"].view(np.uint32), bf16((4 / 3 + c / 2).astype(np.float32)))),
  ("scalar", t["scalar"].shape == () and t["scalar"] == 2.5),
  ("empty", t["empty"].shape == (0, 3)),
]
bn, meta = st.load_file(f"{d}/bn.safetensors")
checks += [
  ("bn keys", sorted(bn) == ["bias", "running_mean", "running_var", "weight"] and meta == {"format": "pt"}),
  ("bn stats", np.array_equal(bn["running_mean"], np.float32(expected[:3])) and
               np.array_equal(bn["running_var"], np.float32(expected[3:]))),
]
bad = [name for name, ok in checks if not ok]
if bad:
  print("mismatch:", bad, t, bn)
  sys.exit(1)
)",
                      args),
            0);
}

} // namespace
