#include "runtime/Npy.h"

#include "support/Error.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <thread>

namespace fs = std::filesystem;
using namespace enc;
using namespace std::string_view_literals;

namespace {

// A .npy file with the given header dict (followed by '\n', unpadded: readers must not rely on padding).
std::string npyFile(std::string_view dict, std::string_view data = {}, int major = 1) {
  std::string header = std::string(dict) + "\n";
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + std::string(data);
}

std::string f32Dict(std::string_view shape) {
  return fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}", shape);
}

std::string zeros(size_t bytes) { return std::string(bytes, '\0'); }

// Values that do not survive a trip through a narrower type, so a mixed-up dtype shows.
Tensor filled(DType dtype, Shape shape) {
  Tensor t(dtype, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, static_cast<double>(i) * 0.37 - 5.25);
  return t;
}

void expectSameTensor(const Tensor &a, const Tensor &b) {
  ASSERT_TRUE(b.defined());
  EXPECT_EQ(a.dtype(), b.dtype());
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0);
}

// Runs `f`, which must throw an enc::Error whose message names `name` and contains `phrase`.
template <typename F> Error expectError(F f, const std::string &name, std::string_view phrase) {
  try {
    f();
  } catch (const Error &e) {
    std::string message = e.what();
    EXPECT_NE(message.find(name), std::string::npos) << "file name missing from: " << message;
    EXPECT_NE(message.find(phrase), std::string::npos) << "expected \"" << phrase << "\" in: " << message;
    return e;
  }
  ADD_FAILURE() << "no enc::Error thrown; expected one containing \"" << phrase << "\"";
  return Error("");
}

Error parseError(std::string_view bytes, std::string_view phrase) {
  return expectError([&] { parseNpy(bytes, "x.npy"); }, "x.npy", phrase);
}

void writeFile(const std::string &path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

bool contains(const std::string &s, std::string_view part) { return s.find(part) != std::string::npos; }

// Debian's python3 may be shadowed by one without numpy (pyenv), so try the system one too.
std::optional<std::string> pythonWithNumpy() {
  for (const char *python : {"python3", "/usr/bin/python3"})
    if (std::system(fmt::format("{} -c 'import numpy' >/dev/null 2>&1", python).c_str()) == 0) return python;
  return std::nullopt;
}

class Npy : public ::testing::Test {
protected:
  void SetUp() override {
    const auto *test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / fmt::format("encc-npy-{}-{}", test->name(), ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  std::string path(std::string_view file) const { return (dir_ / file).string(); }

  std::vector<std::string> listDir() const {
    std::vector<std::string> names;
    for (const auto &entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

const std::vector<Shape> kShapes = {{}, {0}, {1}, {5}, {2, 3}, {2, 0, 3}, {1, 1, 1}, {3, 4, 5}, {2, 3, 4, 5}};

} // namespace

// --- Round trips ---

TEST_F(Npy, RoundTripsInMemory) {
  for (DType dtype : {DType::F32, DType::F64, DType::F16})
    for (const Shape &shape : kShapes) {
      SCOPED_TRACE(fmt::format("{} {}", dtypeName(dtype), shapeString(shape)));
      Tensor t = filled(dtype, shape);
      expectSameTensor(t, parseNpy(serializeNpy(t), "mem.npy"));
    }
}

TEST_F(Npy, RoundTripsThroughFiles) {
  for (DType dtype : {DType::F32, DType::F64, DType::F16})
    for (const Shape &shape : kShapes) {
      SCOPED_TRACE(fmt::format("{} {}", dtypeName(dtype), shapeString(shape)));
      Tensor t = filled(dtype, shape);
      writeNpy(path("t.npy"), t);
      expectSameTensor(t, readNpy(path("t.npy")));
      EXPECT_EQ(listDir(), std::vector<std::string>{"t.npy"}) << "temporary file left behind";
    }
}

TEST_F(Npy, RoundTripKeepsSpecialValuesBitForBit) {
  Tensor t(DType::F64, {6});
  using Limits = std::numeric_limits<double>;
  const double values[] = {std::nan(""),         Limits::infinity(), -0.0,
                           Limits::denorm_min(), Limits::max(),      -1e-300};
  for (int i = 0; i < 6; ++i) t.set(i, values[i]);
  expectSameTensor(t, parseNpy(serializeNpy(t), "special.npy"));
  Tensor f = t.to(DType::F32);
  expectSameTensor(f, parseNpy(serializeNpy(f), "special.npy"));
}

TEST_F(Npy, F16RoundTripsAsF2) {
  // Raw half bit patterns, including -0, the smallest subnormal, the largest finite value, inf and NaN.
  const uint16_t bits[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0xbc00, 0x3555, 0x7bff, 0xfbff,
                           0x7c00, 0xfc00, 0x7e00};
  Tensor t(DType::F16, {13});
  std::memcpy(t.data(), bits, sizeof bits);
  std::string bytes = serializeNpy(t);
  EXPECT_TRUE(contains(bytes, "{'descr': '<f2', 'fortran_order': False, 'shape': (13,), }")) << bytes;
  EXPECT_EQ(bytes.size() % 64, sizeof bits % 64) << "data must start 64-byte aligned";
  EXPECT_EQ(bytes.substr(bytes.size() - sizeof bits), std::string(reinterpret_cast<const char *>(bits), sizeof bits));
  Tensor back = parseNpy(bytes, "h.npy");
  EXPECT_EQ(back.dtype(), DType::F16);
  expectSameTensor(t, back);
  writeNpy(path("h.npy"), t);
  expectSameTensor(t, readNpy(path("h.npy")));
  // '=' also means little-endian here.
  Tensor eq = parseNpy(npyFile("{'descr': '=f2', 'fortran_order': False, 'shape': (2,), }", "\x00\x3c\x00\xc0"sv),
                       "eq.npy");
  ASSERT_EQ(eq.dtype(), DType::F16);
  EXPECT_EQ(eq.at(0), 1.0);
  EXPECT_EQ(eq.at(1), -2.0);
}

TEST_F(Npy, BF16IsWrittenAsExactF4) {
  // bf16 bit patterns; widened to f32 they are the same bits followed by 16 zero bits.
  const uint16_t bits[] = {0x0000, 0x8000, 0x0001, 0x3f80, 0x4049, 0xc2f7, 0x7f7f, 0xff80, 0x3eab};
  constexpr int64_t n = std::size(bits);
  Tensor t(DType::BF16, {3, 3});
  std::memcpy(t.data(), bits, sizeof bits);
  std::string bytes = serializeNpy(t);
  EXPECT_TRUE(contains(bytes, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }")) << bytes;
  writeNpy(path("b.npy"), t);
  for (const Tensor &back : {parseNpy(bytes, "b.npy"), readNpy(path("b.npy"))}) {
    EXPECT_EQ(back.dtype(), DType::F32);
    ASSERT_EQ(back.shape(), (Shape{3, 3}));
    for (int64_t i = 0; i < n; ++i)
      EXPECT_EQ(std::bit_cast<uint32_t>(back.dataAs<float>()[i]), uint32_t{bits[i]} << 16) << i;
  }
  EXPECT_EQ(listDir(), std::vector<std::string>{"b.npy"});
}

TEST_F(Npy, WriteReplacesAnExistingFile) {
  writeNpy(path("t.npy"), filled(DType::F64, {100}));
  Tensor small = filled(DType::F32, {2});
  writeNpy(path("t.npy"), small);
  expectSameTensor(small, readNpy(path("t.npy")));
  EXPECT_EQ(listDir(), std::vector<std::string>{"t.npy"});
}

// --- The bytes we write, against the format spec ---

TEST_F(Npy, WrittenHeaderFollowsTheSpec) {
  struct Case {
    DType dtype;
    Shape shape;
    const char *dict;
  };
  const Case cases[] = {
      {DType::F32, {2, 3}, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"},
      {DType::F64, {5}, "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }"},
      {DType::F32, {}, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"},
      {DType::F64, {4, 0, 1}, "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 0, 1), }"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.dict);
    Tensor t = filled(c.dtype, c.shape);
    std::string bytes = serializeNpy(t);
    ASSERT_GE(bytes.size(), 10u);
    EXPECT_EQ(bytes.substr(0, 6), std::string("\x93NUMPY", 6));
    EXPECT_EQ(bytes[6], 1) << "major version";
    EXPECT_EQ(bytes[7], 0) << "minor version";
    size_t headerLen = static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
    EXPECT_EQ((10 + headerLen) % 64, 0u) << "data must start 64-byte aligned";
    ASSERT_EQ(bytes.size(), 10 + headerLen + t.nbytes());
    std::string header = bytes.substr(10, headerLen);
    ASSERT_TRUE(header.starts_with(c.dict)) << header;
    EXPECT_EQ(header.back(), '\n');
    std::string padding = header.substr(std::strlen(c.dict), headerLen - std::strlen(c.dict) - 1);
    EXPECT_EQ(padding, std::string(padding.size(), ' '));
    EXPECT_EQ(std::memcmp(bytes.data() + 10 + headerLen, t.data(), t.nbytes()), 0);
  }
  // The dict is 59 bytes; 10 + 59 + '\n' = 70, padded up to 128: the length field is 118.
  std::string bytes = serializeNpy(filled(DType::F32, {2, 3}));
  EXPECT_EQ(bytes.substr(0, 10), std::string("\x93NUMPY\x01\x00\x76\x00", 10));
}

TEST_F(Npy, WritesVersion2WhenTheHeaderDoesNotFitVersion1) {
  Tensor t = filled(DType::F32, Shape(25000, 1)); // "1, " * 25000 is more than a 2-byte length can hold
  std::string bytes = serializeNpy(t);
  ASSERT_GE(bytes.size(), 12u);
  EXPECT_EQ(bytes[6], 2);
  EXPECT_EQ(bytes[7], 0);
  size_t headerLen = 0;
  for (int i = 0; i < 4; ++i) headerLen |= size_t{static_cast<unsigned char>(bytes[8 + i])} << (8 * i);
  EXPECT_GT(headerLen, 65535u);
  EXPECT_EQ((12 + headerLen) % 64, 0u);
  EXPECT_EQ(bytes[12 + headerLen - 1], '\n');
  expectSameTensor(t, parseNpy(bytes, "v2.npy"));
}

// --- Parsing what other writers produce ---

TEST_F(Npy, ParsesVersion2And3Files) {
  const float values[] = {1.5f, -2.25f};
  std::string data(reinterpret_cast<const char *>(values), sizeof values);
  for (int major : {2, 3}) {
    SCOPED_TRACE(major);
    std::string bytes = npyFile(f32Dict("(2,)"), data, major);
    ASSERT_EQ(bytes.substr(6, 6), std::string({static_cast<char>(major), 0, 0x3a, 0, 0, 0}))
        << "hand-built preamble";
    Tensor t = parseNpy(bytes, "v.npy");
    ASSERT_EQ(t.shape(), Shape{2});
    EXPECT_EQ(t.dtype(), DType::F32);
    EXPECT_EQ(t.at(0), 1.5);
    EXPECT_EQ(t.at(1), -2.25);
  }
}

TEST_F(Npy, AcceptsHeaderVariants) {
  struct Case {
    const char *dict;
    DType dtype;
    Shape shape;
  };
  const Case cases[] = {
      // Key order, quoting and spacing are free; the trailing comma is optional.
      {"  {  \"shape\" :(2 ,3) ,'fortran_order':False,'descr':'<f8'}   \t\r\n  ", DType::F64, {2, 3}},
      {"{'descr': '=f4', 'fortran_order': False, 'shape': (3,)}", DType::F32, {3}},
      {"{'descr': 'f8', 'fortran_order': False, 'shape': ()}", DType::F64, {}},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0, 3), }", DType::F32, {2, 0, 3}},
      // Python 2 longs in old files.
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L), }", DType::F32, {2, 1}},
      // Fortran order is harmless where it lays out the bytes exactly like C order.
      {"{'descr': '<f4', 'fortran_order': True, 'shape': (4,), }", DType::F32, {4}},
      {"{'descr': '<f4', 'fortran_order': True, 'shape': (1, 4, 1), }", DType::F32, {1, 4, 1}},
      {"{'descr': '<f4', 'fortran_order': True, 'shape': (), }", DType::F32, {}},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.dict);
    Tensor t = parseNpy(npyFile(c.dict, zeros(static_cast<size_t>(shapeNumel(c.shape)) * dtypeSize(c.dtype))),
                        "ok.npy");
    EXPECT_EQ(t.dtype(), c.dtype);
    EXPECT_EQ(t.shape(), c.shape);
  }
  // np.save pads with spaces to a multiple of 64 bytes; older writers used 16, others nothing at all.
  std::string padded = npyFile(f32Dict("(1,)") + std::string(40, ' '), zeros(4));
  EXPECT_EQ(parseNpy(padded, "pad.npy").shape(), Shape{1});
}

// --- Errors: each names the file and says what is wrong ---

TEST_F(Npy, RejectsFilesThatAreNotNpy) {
  parseError("hello, world", "not a .npy file (bad magic bytes)");
  parseError("", "not a .npy file (the file is empty)");
  parseError("\x93NUMPX\x01\x00", "bad magic bytes");
  Error zip = parseError(std::string("PK\x03\x04rest", 8), "bad magic bytes");
  EXPECT_TRUE(contains(zip.hint(), ".npz")) << zip.hint();
}

TEST_F(Npy, RejectsTruncatedPreambleAndHeader) {
  parseError("\x93NU", "truncated: the file ends inside the .npy preamble after 3 bytes");
  parseError(std::string("\x93NUMPY\x01\x00\x10", 9), "truncated: the file ends inside the .npy preamble");
  parseError(std::string("\x93NUMPY\x02\x00\x10\x00", 10),
             "truncated: the file ends inside the .npy preamble");
  std::string whole = npyFile(f32Dict("(1,)"), zeros(4));
  parseError(whole.substr(0, 30),
             "truncated: the header length field says 58 bytes but only 20 bytes follow");
}

TEST_F(Npy, RejectsUnsupportedVersions) {
  std::string bytes = npyFile(f32Dict("(1,)"), zeros(4));
  for (auto [major, minor] : {std::pair{4, 0}, {1, 1}, {0, 0}}) {
    bytes[6] = static_cast<char>(major);
    bytes[7] = static_cast<char>(minor);
    Error e = parseError(bytes, fmt::format("unsupported .npy format version {}.{}", major, minor));
    EXPECT_TRUE(contains(e.hint(), "1.0, 2.0 and 3.0")) << e.hint();
  }
}

TEST_F(Npy, RejectsTruncatedData) {
  Error e = parseError(npyFile(f32Dict("(2, 3, 4)"), zeros(40)), "");
  EXPECT_EQ(std::string(e.what()),
            "x.npy: truncated: header says 24 elements of f32 (96 bytes) but only 40 bytes follow");
  parseError(npyFile(f32Dict("()"), ""),
             "truncated: header says 1 element of f32 (4 bytes) but only 0 bytes follow");
}

TEST_F(Npy, RejectsExtraBytesAfterTheData) {
  parseError(npyFile(f32Dict("(2,)"), zeros(16)), "has 8 extra bytes after the data");
  parseError(npyFile(f32Dict("(0,)"), zeros(1)), "has 1 extra byte after the data");
  // Two arrays appended to one file with np.save.
  std::string one = npyFile(f32Dict("(1,)"), zeros(4));
  Error e = parseError(one + one, "extra bytes after the data");
  EXPECT_TRUE(contains(e.hint(), "one array per .npy file")) << e.hint();
}

TEST_F(Npy, RejectsUnsupportedDTypes) {
  for (const char *descr : {"<i8", "|u1", "|b1", "<i2", "<e", "<c8", "<f16", "bfloat16", "float32", ""}) {
    SCOPED_TRACE(descr);
    std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': (1,), }}", descr);
    Error e = parseError(npyFile(dict, zeros(8)), fmt::format("dtype '{}' is not supported", descr));
    EXPECT_EQ(e.hint(), "encc reads float16, float32 and float64 arrays; convert with arr.astype(np.float32)");
  }
  parseError(npyFile("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", zeros(4)),
             "structured dtype [('a', '<f4')] is not supported");
}

TEST_F(Npy, RejectsBigEndianAndNotApplicableByteOrder) {
  Error big = parseError(npyFile("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", zeros(4)),
                         "dtype '>f4' is big-endian, which is not supported");
  EXPECT_TRUE(contains(big.hint(), "astype('<f4')")) << big.hint();
  Error big8 = parseError(npyFile("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", zeros(8)),
                          "big-endian");
  EXPECT_TRUE(contains(big8.hint(), "astype('<f8')")) << big8.hint();
  parseError(npyFile("{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", zeros(4)),
             "dtype '|f4' has byte order '|' (not applicable)");
  Error big2 = parseError(npyFile("{'descr': '>f2', 'fortran_order': False, 'shape': (1,), }", zeros(2)),
                          "dtype '>f2' is big-endian, which is not supported");
  EXPECT_TRUE(contains(big2.hint(), "astype('<f2')")) << big2.hint();
  parseError(npyFile("{'descr': '|f2', 'fortran_order': False, 'shape': (1,), }", zeros(2)),
             "dtype '|f2' has byte order '|' (not applicable), which is invalid for a 2-byte float");
}

TEST_F(Npy, RejectsFortranOrder) {
  Error e = parseError(npyFile("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", zeros(24)),
                       "stored in Fortran (column-major) order, which is not supported");
  EXPECT_TRUE(contains(e.hint(), "np.ascontiguousarray")) << e.hint();
}

TEST_F(Npy, RejectsMalformedHeaders) {
  struct Case {
    std::string_view dict;
    const char *phrase;
  };
  const Case cases[] = {
      {"{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"},
      {"{'fortran_order': False, 'shape': (1,)}", "missing key 'descr'"},
      {"{'descr': '<f4', 'shape': (1,)}", "missing key 'fortran_order'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", "unexpected key 'extra'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", "duplicate key 'descr'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1)}", "'shape' must be a tuple of integers"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", "'shape' must be a tuple of integers"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': 1}", "'shape' must be a tuple of integers"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 'a')}", "'shape' must be a tuple of integers"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (True,)}", "'shape' must be a tuple of integers"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': ((1,),)}", "'shape' must be a tuple of integers"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}",
       "shape (2, -3) has a negative dimension"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}", "unexpected '2.5'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1e3,)}", "unexpected '1e3'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", "is too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775808,)}", "is too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", "is too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3037000500, 3037000500, 0)}", "is too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3037000500, 3037000500)}", "is too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3037000500, 0, 3037000500)}", "is too large"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,)}", "is too large"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", "'fortran_order' must be True or False"},
      {"{'descr': '<f4', 'fortran_order': None, 'shape': (1,)}", "unexpected 'None'"},
      {"{'descr': 4, 'fortran_order': False, 'shape': (1,)}", "'descr' must be a dtype string"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", "expected ',' or '}'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,", "unexpected end of header"},
      {"{'descr: '<f4', 'fortran_order': False, 'shape': (1,)}", "expected ':' after key 'descr: '"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", "expected ',' or '}' after a dict entry"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), @}", "unexpected character '@'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk",
       "unexpected text after the closing '}'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}\0\0"sv,
       "unexpected text after the closing '}'"},
      {"{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", "expected ',' or '}' after a dict entry"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1 2)}", "expected ',' or ')'"},
      {"{1: '<f4'}", "dict key 1 is not a string"},
      {"['descr', '<f4']", "expected a dict starting with '{'"},
      {"", "expected a dict starting with '{'"},
      {"{'descr': \"<f4}", "unterminated string"},
      {"garbage\x01\xff", "expected a dict starting with '{'"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.dict);
    Error e = parseError(npyFile(c.dict, zeros(4)), c.phrase);
    EXPECT_TRUE(contains(e.what(), "malformed header") || contains(e.what(), "not supported")) << e.what();
  }
  // Control bytes in a header are escaped in the message rather than printed raw.
  Error e = parseError(npyFile("garbage\x01\xff", zeros(4)), "garbage\\x01\\xff");
  EXPECT_FALSE(contains(e.what(), "\x01"));
}

TEST_F(Npy, RejectsDeeplyNestedHeadersWithoutRecursingForever) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + std::string(100000, '(') + "}";
  parseError(npyFile(dict, {}, 2), "nested too deeply");
}

TEST_F(Npy, CorruptInputNeverReadsOutOfBounds) {
  // Every prefix of a valid file, and every single-byte corruption of its preamble and header, either parses
  // or throws enc::Error (run under ASan/valgrind to also catch silent out-of-bounds reads).
  std::string good = serializeNpy(filled(DType::F32, {2, 3}));
  for (size_t n = 0; n < good.size(); ++n) EXPECT_THROW(parseNpy(good.substr(0, n), "cut.npy"), Error) << n;
  for (size_t i = 0; i < 128; ++i)
    for (int bits : {0x01, 0x80, 0xff}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ bits);
      try {
        parseNpy(bad, "flip.npy");
      } catch (const Error &) {
      }
    }
}

// --- Files on disk ---

TEST_F(Npy, ReadErrorsNameThePath) {
  std::string missing = path("missing.npy");
  expectError([&] { readNpy(missing); }, missing, "cannot read");
  expectError([&] { readNpy(dir_.string()); }, dir_.string(), "cannot read");

  std::string bad = path("bad.npy");
  writeFile(bad, "definitely not numpy");
  expectError([&] { readNpy(bad); }, bad + ": not a .npy file (bad magic bytes)", "");

  // The file reader checks sizes on its own path (it reads the data straight into the tensor).
  std::string cut = path("cut.npy");
  writeFile(cut, npyFile(f32Dict("(2, 3, 4)"), zeros(40)));
  expectError([&] { readNpy(cut); }, cut,
              "truncated: header says 24 elements of f32 (96 bytes) but only 40 bytes");
  std::string extra = path("extra.npy");
  writeFile(extra, npyFile(f32Dict("(2,)"), zeros(9)));
  expectError([&] { readNpy(extra); }, extra, "has 1 extra byte after the data");
  std::string huge = path("huge.npy");
  writeFile(huge, npyFile(f32Dict("(1000000000000,)"), zeros(4)));
  expectError([&] { readNpy(huge); }, huge, "truncated: header says 1000000000000 elements");
  std::string shortHeader = path("short.npy");
  writeFile(shortHeader, npyFile(f32Dict("(2,)")).substr(0, 20));
  expectError([&] { readNpy(shortHeader); }, shortHeader, "truncated: the header length field says");
}

TEST_F(Npy, ReadsFromAPipe) {
  std::string fifo = path("pipe.npy");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Tensor t = filled(DType::F64, {3, 2});
  std::thread writer([&] { writeFile(fifo, serializeNpy(t)); });
  Tensor read = readNpy(fifo);
  writer.join();
  expectSameTensor(t, read);
}

// Input with no size up front is read no further than its header says, and every error names it.
TEST_F(Npy, EndlessInputFailsAtOnceNamingTheFile) {
  auto start = std::chrono::steady_clock::now();
  expectError([] { readNpy("/dev/zero"); }, "/dev/zero", "not a .npy file (bad magic bytes)");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
}

// A pipe that keeps `bytes` coming (then closes): readNpy must stop on its own.
template <typename F> void withPipe(const std::string &fifo, const std::string &bytes, F read) {
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    // Blocks until the reader opens; a reader that stops early makes later writes fail, which is fine.
    int fd = ::open(fifo.c_str(), O_WRONLY);
    if (fd < 0) return;
    ::signal(SIGPIPE, SIG_IGN);
    for (size_t done = 0; done < bytes.size();) {
      ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  });
  read();
  writer.join();
}

TEST_F(Npy, PipesAreReadOnlyAsFarAsTheHeaderSays) {
  Tensor t = filled(DType::F32, {2, 3});
  std::string good = serializeNpy(t);
  std::string extra = path("extra.npy");
  withPipe(extra, good + std::string(1000, 'x'),
           [&] { expectError([&] { readNpy(extra); }, extra, "has more bytes after the data"); });
  std::string cut = path("cut.npy");
  withPipe(cut, good.substr(0, good.size() - 5),
           [&] { expectError([&] { readNpy(cut); }, cut, "truncated: header says 6 elements of f32 (24 bytes)"); });
  std::string header = path("header.npy");
  withPipe(header, good.substr(0, 40), [&] { expectError([&] { readNpy(header); }, header, "truncated: the header"); });
  // A header length no .npy header needs is refused before anything is allocated for it.
  std::string longHeader = npyFile(f32Dict("(2,)"), zeros(8), 2);
  longHeader[8] = longHeader[9] = longHeader[10] = longHeader[11] = '\x7f';
  std::string longPath = path("long.npy");
  withPipe(longPath, longHeader, [&] { expectError([&] { readNpy(longPath); }, longPath, "header length field says"); });
  // What a pipe holds exactly is read.
  Tensor scalar = filled(DType::F64, {});
  std::string small = path("small.npy");
  withPipe(small, serializeNpy(scalar), [&] { expectSameTensor(scalar, readNpy(small)); });
}

TEST_F(Npy, ArrayLargerThanMemoryIsAnErrorNamingTheFile) {
  // 10^12 float32s: 4 TB, more than any test machine has. Neither pipe nor regular file gets further than
  // the header; the data is never read or allocated.
  std::string header = npyFile(f32Dict("(1000000000000,)"));
  std::string piped = path("piped.npy");
  withPipe(piped, header + zeros(64), [&] {
    Error e = expectError([&] { readNpy(piped); }, piped, "more than this machine's memory");
    EXPECT_TRUE(contains(e.what(), "[1000000000000]")) << e.what();
  });
  std::string sparse = path("sparse.npy");
  writeFile(sparse, header);
  fs::resize_file(sparse, header.size() + uint64_t{4000000000000});
  expectError([&] { readNpy(sparse); }, sparse, "more than this machine's memory");
  expectError([&] { parseNpy(header, "mem.npy"); }, "mem.npy", "truncated");
}

TEST_F(Npy, WriteErrorsNameThePathAndLeaveNoTemporaryFile) {
  std::string noDir = path("no/such/dir/t.npy");
  expectError([&] { writeNpy(noDir, filled(DType::F32, {2})); }, noDir, "cannot write");
  fs::create_directory(dir_ / "sub");
  std::string isDir = path("sub");
  expectError([&] { writeNpy(isDir, filled(DType::F32, {2})); }, isDir, "cannot write");
  EXPECT_EQ(listDir(), std::vector<std::string>{"sub"});
  expectError([&] { writeNpy(path("u.npy"), Tensor()); }, path("u.npy"), "undefined");
  EXPECT_THROW(serializeNpy(Tensor()), Error);
}

// --- Interoperability with NumPy itself ---

TEST_F(Npy, InteroperatesWithNumpy) {
  std::optional<std::string> python = pythonWithNumpy();
  if (!python)
    GTEST_SKIP()
        << "numpy is not importable from python3 or /usr/bin/python3 (apt-get install python3-numpy)";
  auto runPython = [&](const std::string &script) {
    std::string file = path("script.py");
    writeFile(file, script);
    return std::system(fmt::format("{} '{}' '{}'", *python, file, dir_.string()).c_str());
  };

  ASSERT_EQ(runPython(R"(
import sys, numpy as np
d = sys.argv[1]
np.save(f"{d}/f32.npy", (np.arange(24, dtype=np.float32) * 0.5 - 3).reshape(2, 3, 4))
np.save(f"{d}/f64.npy", np.arange(7, dtype=np.float64) / 3)
np.save(f"{d}/scalar.npy", np.array(2.5))
np.save(f"{d}/empty.npy", np.zeros((0, 3), dtype=np.float32))
np.save(f"{d}/fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
np.save(f"{d}/int.npy", np.arange(3, dtype=np.int64))
np.save(f"{d}/big.npy", np.ones(3, dtype=">f4"))
np.save(f"{d}/f16.npy", np.array([1, -2.5, 65504, 2**-24, np.inf], dtype=np.float16))
np.save(f"{d}/big16.npy", np.ones(3, dtype=">f2"))
)"),
            0);
  Tensor f32 = readNpy(path("f32.npy"));
  EXPECT_EQ(f32.dtype(), DType::F32);
  ASSERT_EQ(f32.shape(), (Shape{2, 3, 4}));
  for (int64_t i = 0; i < 24; ++i) EXPECT_EQ(f32.at(i), static_cast<double>(i) * 0.5 - 3) << i;
  Tensor f64 = readNpy(path("f64.npy"));
  EXPECT_EQ(f64.dtype(), DType::F64);
  ASSERT_EQ(f64.shape(), Shape{7});
  for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(f64.at(i), static_cast<double>(i) / 3) << i;
  Tensor scalar = readNpy(path("scalar.npy"));
  ASSERT_EQ(scalar.shape(), Shape{});
  EXPECT_EQ(scalar.at(0), 2.5);
  EXPECT_EQ(readNpy(path("empty.npy")).shape(), (Shape{0, 3}));
  expectError([&] { readNpy(path("fortran.npy")); }, path("fortran.npy"), "Fortran (column-major) order");
  expectError([&] { readNpy(path("int.npy")); }, path("int.npy"), "dtype '<i8' is not supported");
  expectError([&] { readNpy(path("big.npy")); }, path("big.npy"), "big-endian");
  Tensor f16 = readNpy(path("f16.npy"));
  EXPECT_EQ(f16.dtype(), DType::F16);
  ASSERT_EQ(f16.shape(), Shape{5});
  const double f16Values[] = {1, -2.5, 65504, std::ldexp(1.0, -24), std::numeric_limits<double>::infinity()};
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(f16.at(i), f16Values[i]) << i;
  expectError([&] { readNpy(path("big16.npy")); }, path("big16.npy"), "big-endian");

  Tensor a(DType::F32, {3, 4});
  for (int64_t i = 0; i < 12; ++i) a.set(i, static_cast<double>(i) * 0.25 - 1);
  Tensor b(DType::F64, {2, 2, 2});
  for (int64_t i = 0; i < 8; ++i) b.set(i, static_cast<double>(i) / 7);
  writeNpy(path("a.npy"), a);
  writeNpy(path("b.npy"), b);
  writeNpy(path("c.npy"), Tensor(DType::F64, {}));
  writeNpy(path("d.npy"), Tensor(DType::F32, {2, 0}));
  Tensor h(DType::F16, {4}), bf(DType::BF16, {3});
  for (int64_t i = 0; i < 4; ++i) h.set(i, static_cast<double>(i) * 0.75 - 1); // exact in f16
  for (int64_t i = 0; i < 3; ++i) bf.set(i, static_cast<double>(i) * 1.5 + 0.5); // exact in bf16
  writeNpy(path("h.npy"), h);
  writeNpy(path("bf.npy"), bf);
  EXPECT_EQ(runPython(R"(
import sys, numpy as np
d = sys.argv[1]
h, bf = np.load(f"{d}/h.npy"), np.load(f"{d}/bf.npy")
ok = (h.dtype == np.float16 and (h == np.arange(4) * 0.75 - 1).all()
      and bf.dtype == np.float32 and (bf == np.arange(3) * 1.5 + 0.5).all())
sys.exit(0 if ok else 1)
)"),
            0)
      << "numpy did not read back the f16/bf16 tensors writeNpy wrote";
  EXPECT_EQ(runPython(R"(
import sys, numpy as np
d = sys.argv[1]
a, b, c, e = (np.load(f"{d}/{n}.npy") for n in "abcd")
ok = (a.dtype == np.float32 and a.shape == (3, 4)
      and (a.ravel() == np.arange(12, dtype=np.float32) * 0.25 - 1).all()
      and b.dtype == np.float64 and b.shape == (2, 2, 2) and (b.ravel() == np.arange(8) / 7).all()
      and c.dtype == np.float64 and c.shape == () and c == 0
      and e.dtype == np.float32 and e.shape == (2, 0))
sys.exit(0 if ok else 1)
)"),
            0)
      << "numpy did not read back what writeNpy wrote";
}
