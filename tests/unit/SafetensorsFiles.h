// What the safetensors suites share: tensors whose values show a mixed-up dtype, hand-made files,
// the shipped layers, and a fixture giving each test a directory of its own.
#pragma once

#include "runtime/CudaDriver.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Npy.h"
#include "runtime/Safetensors.h"
#include "support/Error.h"

#include "CliTestSupport.h"
#include "LayerCases.h"

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

namespace enc::testing {

// Values that do not survive a trip through a narrower type, so a mixed-up dtype shows.
inline Tensor filled(DType dtype, Shape shape, double offset = 0) {
  Tensor t(dtype, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, static_cast<double>(i) * 0.37 - 5.25 + offset);
  return t;
}

inline void expectSameTensor(const Tensor &expected, const Tensor &actual, const std::string &what) {
  ASSERT_TRUE(actual.defined()) << what;
  EXPECT_EQ(expected.dtype(), actual.dtype()) << what;
  ASSERT_EQ(expected.shape(), actual.shape()) << what;
  EXPECT_EQ(std::memcmp(expected.data(), actual.data(), expected.nbytes()), 0) << what;
}

// A safetensors file with this header text and data, the length field written as given.
inline std::string fileWithLength(uint64_t length, std::string_view header, std::string_view data = {}) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((length >> (8 * i)) & 0xff);
  return out + std::string(header) + std::string(data);
}
inline std::string stFile(std::string_view header, std::string_view data = {}) {
  return fileWithLength(header.size(), header, data);
}

inline void writeFile(const fs::path &path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string errorText(const std::function<void()> &f) {
  try {
    f();
  } catch (const Error &e) {
    return std::string(e.what()) + "\n  hint: " + e.hint();
  }
  ADD_FAILURE() << "no enc::Error thrown";
  return "";
}

// Debian's python3 may be shadowed by one without numpy (pyenv), so try the system one too.
inline std::optional<std::string> pythonWithNumpy() {
  for (const char *python : {"python3", "/usr/bin/python3"})
    if (std::system(fmt::format("{} -c 'import numpy' >/dev/null 2>&1", python).c_str()) == 0) return python;
  return std::nullopt;
}

inline LayerOptions cpuOptions(DType dtype = DType::F32, bool training = true) {
  LayerOptions o;
  o.dtype = dtype;
  o.training = training;
  o.device = Device::CPU;
  return o;
}

inline std::unique_ptr<Layer> batchNorm(LayerOptions o = cpuOptions()) {
  return std::make_unique<Layer>(lib(), "SyncBatchNorm", std::map<std::string, std::string>{{"num_features", "3"}}, o);
}

// A training pass with inputs whose per-channel means and variances are far from the initial running
// statistics (0 and 1), so that the buffers a state carries differ from a fresh layer's.
inline void trainOnce(Layer &layer) {
  Tensor x(layer.dtype(), {4, 3, 5});
  for (int64_t i = 0; i < x.numel(); ++i) x.set(i, 3.0 + static_cast<double>((i * 7) % 11) * 0.5 + static_cast<double>((i / 5) % 3));
  layer.forward({{"X", x}});
}

// Each test in a directory of its own (removed unless the test failed), and the check of a read error.
class SafetensorsDir : public ::testing::Test {
protected:
  void SetUp() override {
    const auto *test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / fmt::format("encc-safetensors-{}-{}", test->name(), ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    if (!HasFailure()) fs::remove_all(dir_, ignored);
  }

  std::string path(std::string_view file) const { return (dir_ / file).string(); }

  // Writes `bytes` to bad.safetensors, reads it, and expects an error naming the file and each of `parts`.
  void expectReadError(std::string_view bytes, const std::vector<std::string> &parts) {
    writeFile(path("bad.safetensors"), bytes);
    std::string message = errorText([&] { readSafetensors(path("bad.safetensors")); });
    EXPECT_NE(message.find(path("bad.safetensors") + ": "), std::string::npos) << "no file name in: " << message;
    for (const std::string &p : parts) EXPECT_NE(message.find(p), std::string::npos) << "expected '" << p << "' in: " << message;
  }

  fs::path dir_;
};

} // namespace enc::testing
