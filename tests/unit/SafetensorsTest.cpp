// Safetensors files: round trips, a clear error for every kind of damaged file, and a layer's state
// saved and loaded by torch's state_dict names.
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

class Safetensors : public SafetensorsDir {};

// ---- round trips ----------------------------------------------------------------------------------------

TEST_F(Safetensors, RoundTripsEveryDTypeAndShape) {
  std::map<std::string, Tensor> tensors = {
      {"conv1.weight", filled(DType::F32, {2, 3, 4})},
      {"scalar", filled(DType::F64, {})},
      {"layer1.0.bn1.running_mean", filled(DType::F16, {5})},
      {"bf", filled(DType::BF16, {3, 1, 2})},
      {"empty", Tensor(DType::F32, {0})},
      {"empty2", Tensor(DType::F64, {2, 0, 3})},
      {"unicode \xc3\xa9", filled(DType::F32, {1}, 1)},
  };
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "a \"quoted\" value"}};
  writeSafetensors(path("a.safetensors"), tensors, metadata);
  SafetensorsFile file = readSafetensorsFile(path("a.safetensors"));
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto &[name, t] : tensors) expectSameTensor(t, file.tensors.at(name), name);
  EXPECT_EQ(file.metadata, metadata);
  EXPECT_TRUE(file.skipped.empty());
  EXPECT_EQ(readSafetensors(path("a.safetensors")).size(), tensors.size());

  // The data starts 8-byte aligned, as the reference writer leaves it; no temporary file stays behind.
  std::ifstream in(path("a.safetensors"), std::ios::binary);
  unsigned char len[8];
  in.read(reinterpret_cast<char *>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{len[i]} << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(Safetensors, RoundTripsNoTensors) {
  writeSafetensors(path("none.safetensors"), {});
  SafetensorsFile file = readSafetensorsFile(path("none.safetensors"));
  EXPECT_TRUE(file.tensors.empty());
  EXPECT_TRUE(file.metadata.empty());
}

TEST_F(Safetensors, WriterRejectsWhatTheFormatCannotHold) {
  std::string m = errorText([&] { writeSafetensors(path("x.safetensors"), {{"__metadata__", filled(DType::F32, {1})}}); });
  EXPECT_NE(m.find("reserved"), std::string::npos) << m;
  m = errorText([&] { writeSafetensors(path("x.safetensors"), {{"w", Tensor()}}); });
  EXPECT_NE(m.find("'w' is undefined"), std::string::npos) << m;
  m = errorText([&] { writeSafetensors(path("x.safetensors"), {{"bad \xff name", filled(DType::F32, {1})}}); });
  EXPECT_NE(m.find("not valid UTF-8"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(path("x.safetensors")));
}

// ---- damaged files ------------------------------------------------------------------------------------

constexpr std::string_view kF32x2 = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";

TEST_F(Safetensors, AcceptsAHandWrittenFile) {
  // The reference for the cases below: the same bytes with one thing wrong each.
  float values[2] = {1.5f, -2.25f};
  writeFile(path("ok.safetensors"), stFile(kF32x2, std::string_view(reinterpret_cast<char *>(values), 8)));
  Tensor w = readSafetensors(path("ok.safetensors")).at("w");
  ASSERT_EQ(w.shape(), Shape{2});
  EXPECT_EQ(w.at(0), 1.5);
  EXPECT_EQ(w.at(1), -2.25);
}

TEST_F(Safetensors, MissingFileOrDirectoryOrFifo) {
  std::string m = errorText([&] { readSafetensors(path("nope.safetensors")); });
  EXPECT_NE(m.find("cannot read " + path("nope.safetensors")), std::string::npos) << m;
  m = errorText([&] { readSafetensors(dir_.string()); });
  EXPECT_NE(m.find("is a directory"), std::string::npos) << m;
  // No writer ever opens the FIFO: a reader that waited for one would hang here.
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  m = errorText([&] { readSafetensors(path("fifo")); });
  EXPECT_NE(m.find(path("fifo") + ": is not a regular file"), std::string::npos) << m;
}

TEST_F(Safetensors, TooShort) {
  expectReadError("", {"too short", "0 bytes"});
  expectReadError(std::string("\x05\x00\x00", 3), {"too short", "3 bytes"});
}

TEST_F(Safetensors, HeaderLengthBeyondTheFile) {
  expectReadError(fileWithLength(1000, kF32x2, std::string(8, '\0')), {"header length field says 1000 bytes", "follow"});
  expectReadError(fileWithLength(~uint64_t{0}, "{}"), {"header length field says 18446744073709551615 bytes"});
  // What torch.save writes (a zip archive) is not safetensors, and the hint says so.
  expectReadError("PK\x03\x04" + std::string(20, 'z'), {"not a safetensors file", "looks like a torch.save file"});
  expectReadError("\x80\x02" + std::string(20, 'z'), {"not a safetensors file", "looks like a torch.save file"}); // a pickle
}

TEST_F(Safetensors, HeaderLongerThanTheFormatAllows) {
  // A sparse file: the header length is within the file, but beyond the 100 MB bound.
  const uint64_t length = 150'000'000;
  writeFile(path("bad.safetensors"), fileWithLength(length, "{"));
  fs::resize_file(path("bad.safetensors"), 8 + length + 16);
  std::string m = errorText([&] { readSafetensors(path("bad.safetensors")); });
  EXPECT_NE(m.find("150000000 bytes, more than the 100000000 bytes safetensors allows"), std::string::npos) << m;
  EXPECT_EQ(m.find("looks like a torch.save"), std::string::npos) << m;
}

TEST_F(Safetensors, HeaderIsNotJsonOrNotAnObject) {
  expectReadError(stFile("{\"w\": \xff}"), {"not valid JSON at byte 6 of the header, after the name 'w'"});
  std::string stray = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, x})";
  expectReadError(stFile(stray), {fmt::format("not valid JSON at byte {} of the header, after the name 'w'", stray.find('x')),
                                  "invalid literal"});
  expectReadError(stFile("[1, 2]"), {"not a JSON object"});
  expectReadError(stFile("42"), {"not a JSON object"});
  // A NUL byte would end nlohmann's input there: the entries or text after it were never looked at.
  expectReadError(stFile(std::string("{}\0\0\0\0\0\0", 8)), {"not valid JSON at byte 2 of the header: a NUL byte"});
  expectReadError(stFile(std::string(kF32x2) + std::string("\0", 1) + R"({"x": 1})", std::string(8, '\0')),
                  {fmt::format("not valid JSON at byte {} of the header: a NUL byte", kF32x2.size())});
  expectReadError(stFile(""), {"the header is empty (0 bytes), not a JSON object"});
  expectReadError(stFile("        "), {"the header is empty (8 bytes)"});
  // safetensors' own reader refuses what nlohmann's parser would skip before the object.
  expectReadError(stFile("\xEF\xBB\xBF" + std::string(kF32x2), std::string(8, '\0')),
                  {"the header starts with a UTF-8 byte order mark, not '{'", "from its first byte"});
  expectReadError(stFile(" " + std::string(kF32x2), std::string(8, '\0')), {"the header starts with white space, not '{'"});
  expectReadError(stFile("\n" + std::string(kF32x2), std::string(8, '\0')), {"the header starts with white space"});
  // A header length that takes in the data's bytes (or text after the object): where the object ends.
  expectReadError(stFile(std::string(kF32x2) + " {}", std::string(8, '\0')),
                  {fmt::format("the header has more after its JSON object, at byte {} of the header", kF32x2.size() + 1),
                   "header length field"});
  expectReadError(fileWithLength(kF32x2.size() + 8, kF32x2, std::string(8, '\x01')),
                  {fmt::format("the header has more after its JSON object, at byte {} of the header", kF32x2.size())});
}

// JSON that ends early is called truncated, at the byte where it ends and inside what, whatever value
// the parser was in ("while parsing array" said nothing about the file).
TEST_F(Safetensors, HeaderIsTruncatedJson) {
  std::string whole = std::string(kF32x2);
  struct Cut {
    size_t at;
    std::string inside;
    std::string expected;
  };
  size_t shape = whole.find("[2]") + 2, dtype = whole.find("\"F32\"") + 3, last = whole.size() - 1;
  for (const Cut &c : {Cut{shape, "inside the entry of tensor 'w', in its \"shape\"", "expected ']'"},
                       Cut{dtype, "inside the entry of tensor 'w'", "missing closing quote"},
                       Cut{last, "after the name 'w'", "expected '}'"}, Cut{1, "", "expected string literal"}}) {
    SCOPED_TRACE(whole.substr(0, c.at));
    expectReadError(stFile(whole.substr(0, c.at)),
                    {fmt::format("the header is truncated JSON: it ends at byte {} of the header", c.at), c.inside,
                     c.expected, fmt::format("header length field says {} byte", c.at)});
    writeFile(path("bad.safetensors"), stFile(whole.substr(0, c.at)));
    std::string m = errorText([&] { readSafetensors(path("bad.safetensors")); });
    EXPECT_EQ(m.find("while parsing"), std::string::npos) << m;
  }
  expectReadError(stFile(R"({"__metadata__": {"format": "p)"), {"truncated JSON", "inside __metadata__"});
}

TEST_F(Safetensors, EntriesThatAreNotObjects) {
  expectReadError(stFile(R"({"w": 5})"), {"tensor 'w'", "its entry is 5, not an object"});
  expectReadError(stFile(R"({"w": [0, 8]})"), {"tensor 'w'", "array, not an object"});
  expectReadError(stFile(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", std::string(8, '\0')),
                  {"tensor 'w'", "no \"dtype\""});
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "shape": [2]}})"),
                  {"'w' has the key 'shape' twice"});
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
                            "w": {"dtype": "F32", "shape": [], "data_offsets": [4, 8]}})",
                         std::string(8, '\0')),
                  {"names 'w' twice"});
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [[[2]]], "data_offsets": [0, 8]}})"),
                  {"tensor 'w'", "nested too deeply"});
  std::string longShape = "[1";
  for (int i = 0; i < 100'000; ++i) longShape += ",1";
  longShape += "]";
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": )" + longShape + R"(, "data_offsets": [0, 4]}})"),
                  {"tensor 'w'", "more than 100000 items"});
}

TEST_F(Safetensors, Metadata) {
  expectReadError(stFile(R"({"__metadata__": {"epoch": 3}})"), {"metadata 'epoch' is 3, not a string"});
  expectReadError(stFile(R"({"__metadata__": {"a": {"b": "c"}}})"), {"metadata 'a' is not a string"});
  expectReadError(stFile(R"({"__metadata__": "pt"})"), {"__metadata__ is \"pt\", not an object"});
}

TEST_F(Safetensors, DTypes) {
  expectReadError(stFile(R"({"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}})", std::string(8, '\0')),
                  {"tensor 'w'", "unknown dtype \"F33\"", "F32, F64, F16 and BF16"});
  expectReadError(stFile(R"({"step": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]}})", std::string(8, '\0')),
                  {"tensor 'step'", "dtype I64 is not supported", "tensor.float()"});
  expectReadError(stFile(R"({"w": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}})", std::string(8, '\0')),
                  {"tensor 'w'", "dtype 4 is not a string"});
}

TEST_F(Safetensors, Shapes) {
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}})", std::string(8, '\0')),
                  {"tensor 'w'", "shape [2,-1] has a negative dimension"});
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}})", std::string(8, '\0')),
                  {"tensor 'w'", "not a size (2.0)"});
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})", std::string(8, '\0')),
                  {"tensor 'w'", "shape 2 is not a list"});
  // 2^62 * 2^62 elements: the count overflows before the offsets could be compared with it.
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904, 0],
                            "data_offsets": [0, 0]}})"),
                  {"tensor 'w'", "is too large"});
  expectReadError(stFile(R"({"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}})"),
                  {"tensor 'w'", "is too large"});
}

TEST_F(Safetensors, DataOffsets) {
  std::string data(8, '\0');
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", data),
                  {"tensor 'w'", "data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12 bytes"});
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", data),
                  {"tensor 'w'", "reach past the end of the data (8 bytes)", "truncated"});
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", data),
                  {"tensor 'w'", "end before they begin"});
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", data),
                  {"tensor 'w'", "not a pair of byte offsets"});
  expectReadError(stFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, -8]}})", data),
                  {"tensor 'w'", "not a pair of byte offsets"});
  expectReadError(stFile(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                         data),
                  {"tensor 'b'", "overlap those of 'a' [0, 8]"});
  expectReadError(stFile(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", data),
                  {"bytes [0, 4) of the data belong to no tensor"});
  // Trailing bytes after the last tensor are an error: a damaged or concatenated file.
  expectReadError(stFile(kF32x2, std::string(12, '\0')), {"has 4 extra bytes after the last tensor's data", "appended"});
  // The file cut short inside the data.
  expectReadError(stFile(kF32x2, std::string(6, '\0')), {"tensor 'w'", "reach past the end of the data (6 bytes)"});
}

TEST_F(Safetensors, SkippedEntriesAreCheckedButNotRead) {
  std::string data(8 + 12, '\0');
  int64_t counter = 7;
  std::memcpy(data.data(), &counter, 8);
  std::string header = R"({"bn.num_batches_tracked": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
                           "bn.weight": {"dtype": "F32", "shape": [3], "data_offsets": [8, 20]}})";
  writeFile(path("a.safetensors"), stFile(header, data));
  auto skip = [](const std::string &name) { return name.ends_with("num_batches_tracked"); };
  SafetensorsFile file = readSafetensorsFile(path("a.safetensors"), skip);
  EXPECT_EQ(file.skipped, std::vector<std::string>{"bn.num_batches_tracked"});
  ASSERT_EQ(file.tensors.size(), 1u);
  EXPECT_EQ(file.tensors.at("bn.weight").shape(), Shape{3});
  // Without skipping, the int64 entry is named as the problem.
  std::string m = errorText([&] { readSafetensors(path("a.safetensors")); });
  EXPECT_NE(m.find("tensor 'bn.num_batches_tracked': dtype I64 is not supported"), std::string::npos) << m;
  // A skipped entry's size still has to agree with its dtype.
  header = R"({"num_batches_tracked": {"dtype": "I64", "shape": [], "data_offsets": [0, 4]}})";
  writeFile(path("b.safetensors"), stFile(header, std::string(4, '\0')));
  m = errorText([&] { readSafetensorsFile(path("b.safetensors"), skip); });
  EXPECT_NE(m.find("shape [] of I64 needs 8 bytes"), std::string::npos) << m;
}

// ---- layers -------------------------------------------------------------------------------------------

TEST_F(Safetensors, LayerStateRoundTrip) {
  auto trained = batchNorm();
  trained->setParam("weight", filled(DType::F32, {3}, 6));
  trained->setParam("bias", filled(DType::F32, {3}, 2));
  trainOnce(*trained);
  std::map<std::string, Tensor> state = trained->stateDict();
  ASSERT_EQ(state.size(), 4u);
  EXPECT_NE(state.at("running_mean").at(0), 0.0); // the pass moved the running statistics
  EXPECT_NE(state.at("running_var").at(1), 1.0);
  trained->saveState(path("bn.safetensors"));
  EXPECT_EQ(readSafetensorsFile(path("bn.safetensors")).metadata.at("format"), "pt");

  auto fresh = batchNorm(cpuOptions(DType::F32, /*training=*/false));
  Layer::StateKeys keys = fresh->loadState(path("bn.safetensors"));
  EXPECT_TRUE(keys.missing.empty());
  EXPECT_TRUE(keys.unexpected.empty());
  for (const auto &[name, t] : state) expectSameTensor(t, fresh->stateDict().at(name), name);

  // The loaded statistics are the ones an evaluation pass uses: y = (x - mean) / sqrt(var + eps) * w + b.
  Tensor x = filled(DType::F32, {2, 3, 4});
  Tensor y = fresh->forward({{"X", x}}).at("Y");
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t c = (i / 4) % 3;
    double expected = (x.at(i) - state.at("running_mean").at(c)) / std::sqrt(state.at("running_var").at(c) + 1e-5) *
                          state.at("weight").at(c) +
                      state.at("bias").at(c);
    EXPECT_NEAR(y.at(i), expected, 1e-4 * (1 + std::abs(expected))) << i;
  }
}

// A CUDA layer's state goes through host memory both ways. ("Gpu" in the name: ctest runs it on the
// CUDA emulator as well.)
TEST_F(Safetensors, GpuLayerStateRoundTrip) {
  if (!cuda::Gpu::get()) GTEST_SKIP() << "no GPU: " << cuda::Driver::unavailableReason();
  LayerOptions o = cpuOptions();
  o.device = Device::CUDA;
  auto trained = batchNorm(o);
  trainOnce(*trained);
  trained->saveState(path("bn.safetensors"));
  std::map<std::string, Tensor> onDisk = readSafetensors(path("bn.safetensors"));
  EXPECT_NE(onDisk.at("running_mean").at(0), 0.0);
  auto fresh = batchNorm(o);
  fresh->loadState(path("bn.safetensors"));
  for (const auto &[name, t] : trained->stateDict()) {
    Tensor loaded = fresh->stateDict().at(name);
    EXPECT_EQ(loaded.device(), Device::CUDA) << name;
    expectSameTensor(t.cpu(), loaded.cpu(), name);
    expectSameTensor(t.cpu(), onDisk.at(name), name);
  }
}

TEST_F(Safetensors, LayerLoadsOtherFloatDTypes) {
  std::map<std::string, Tensor> state = {{"weight", filled(DType::F64, {3}, 0.1)},
                                         {"bias", filled(DType::F16, {3}, 0.2)},
                                         {"running_mean", filled(DType::BF16, {3}, 0.3)},
                                         {"running_var", filled(DType::F32, {3}, 9)}};
  writeSafetensors(path("mixed.safetensors"), state);
  for (DType layerDType : {DType::F32, DType::F64}) {
    auto layer = batchNorm(cpuOptions(layerDType));
    layer->loadState(path("mixed.safetensors"));
    for (const auto &[name, t] : state) {
      Tensor got = layer->stateDict().at(name);
      EXPECT_EQ(got.dtype(), layer->paramDType()) << name;
      expectSameTensor(t.to(layer->paramDType()), got, name);
    }
  }
}

TEST_F(Safetensors, LayerStrictKeysAndShapes) {
  std::map<std::string, Tensor> state = batchNorm()->stateDict();
  auto layer = batchNorm();
  layer->setParam("weight", filled(DType::F32, {3}, 4));
  Tensor before = layer->stateDict().at("weight").clone();

  // One buffer misspelled, one torch-only counter (ignored), one stray tensor.
  std::map<std::string, Tensor> renamed = state;
  renamed["running_vra"] = renamed.at("running_var");
  renamed.erase("running_var");
  renamed["extra.thing"] = filled(DType::F32, {2});
  renamed["weight"] = filled(DType::F32, {3}, 1);
  writeSafetensors(path("renamed.safetensors"), renamed);
  std::string m = errorText([&] { layer->loadState(path("renamed.safetensors")); });
  EXPECT_NE(m.find(path("renamed.safetensors") + ": does not match layer SyncBatchNorm"), std::string::npos) << m;
  EXPECT_NE(m.find("missing keys 'running_var'"), std::string::npos) << m;
  EXPECT_NE(m.find("unexpected keys 'extra.thing', 'running_vra' (did you mean 'running_var'?)"), std::string::npos) << m;
  EXPECT_NE(m.find("strict=*/false"), std::string::npos) << m;
  expectSameTensor(before, layer->stateDict().at("weight"), "weight after a failed load");

  // Not strict: what both have is loaded, and the rest reported.
  Layer::StateKeys keys = layer->loadState(path("renamed.safetensors"), /*strict=*/false);
  EXPECT_EQ(keys.missing, std::vector<std::string>{"running_var"});
  EXPECT_EQ(keys.unexpected, (std::vector<std::string>{"extra.thing", "running_vra"}));
  expectSameTensor(renamed.at("weight"), layer->stateDict().at("weight"), "weight");

  // A submodule's state saved under its parent's names: the hint names the prefix.
  std::map<std::string, Tensor> prefixed;
  for (const auto &[name, t] : state) prefixed["layer1.0.bn1." + name] = t;
  writeSafetensors(path("prefixed.safetensors"), prefixed);
  m = errorText([&] { layer->loadState(path("prefixed.safetensors")); });
  EXPECT_NE(m.find("missing keys 'bias', 'running_mean', 'running_var', 'weight'"), std::string::npos) << m;
  EXPECT_NE(m.find("start with 'layer1.0.bn1.'"), std::string::npos) << m;

  // A wrong shape names the file, the tensor and both shapes, and changes nothing.
  std::map<std::string, Tensor> wide = state;
  wide["running_mean"] = filled(DType::F32, {4});
  wide["weight"] = filled(DType::F32, {3}, 8);
  writeSafetensors(path("wide.safetensors"), wide);
  Tensor weightNow = layer->stateDict().at("weight").clone();
  m = errorText([&] { layer->loadState(path("wide.safetensors")); });
  EXPECT_NE(m.find("tensor 'running_mean' has shape [4], but layer SyncBatchNorm's buffer 'running_mean' has shape [3]"),
            std::string::npos)
      << m;
  expectSameTensor(weightNow, layer->stateDict().at("weight"), "weight after a failed load");
}

TEST_F(Safetensors, LayerIgnoresTorchsBatchCounter) {
  std::map<std::string, Tensor> state = batchNorm()->stateDict();
  state["running_mean"] = filled(DType::F32, {3}, 1);
  writeSafetensors(path("bn.safetensors"), state);
  // Add torch's int64 counter by rewriting the file by hand: encc itself writes no int64.
  SafetensorsFile file = readSafetensorsFile(path("bn.safetensors"));
  std::string header = "{";
  std::string data;
  int64_t counter = 12;
  data.append(reinterpret_cast<const char *>(&counter), 8);
  header += R"("num_batches_tracked": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]})";
  for (const auto &[name, t] : file.tensors) {
    header += fmt::format(R"(, "{}": {{"dtype": "F32", "shape": [3], "data_offsets": [{}, {}]}})", name, data.size(),
                          data.size() + t.nbytes());
    data.append(static_cast<const char *>(t.data()), t.nbytes());
  }
  header += "}";
  writeFile(path("torch.safetensors"), stFile(header, data));
  auto layer = batchNorm();
  Layer::StateKeys keys = layer->loadState(path("torch.safetensors"));
  EXPECT_TRUE(keys.unexpected.empty());
  expectSameTensor(state.at("running_mean"), layer->stateDict().at("running_mean"), "running_mean");
}

} // namespace
