// Zero-element arrays ((0,), (3, 0), (0, 5, 2)) are valid .npy files: every way of reading and writing
// one gives an empty tensor of that shape, a layer takes it like any other input, and a layer that
// cannot take it says so as a shape error naming the input.
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Npy.h"
#include "runtime/Tensor.h"

#include "CliTestSupport.h"
#include "ErrorTestSupport.h"
#include "LayerCases.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <sys/stat.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace enc {
namespace {

using namespace enc::testing;
using ::testing::HasSubstr;

const std::vector<Shape> kEmptyShapes = {{0}, {3, 0}, {0, 5, 2}, {2, 0, 4, 0}};

// A .npy file as another writer makes it: the given header dict (unpadded) and no data.
std::string npyWithoutData(const std::string &dict) {
  std::string header = dict + "\n";
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header;
}

std::string tupleText(const Shape &shape) {
  std::string s = "(";
  for (int64_t d : shape) s += fmt::format("{}, ", d);
  return s + ")";
}

class EmptyArrays : public CliTest {};

TEST_F(EmptyArrays, ReadAndWrittenAlikeByEveryPath) {
  for (DType dtype : {DType::F32, DType::F64, DType::F16})
    for (const Shape &shape : kEmptyShapes) {
      SCOPED_TRACE(fmt::format("{} {}", dtypeName(dtype), shapeString(shape)));
      Tensor t(dtype, shape);
      EXPECT_EQ(t.numel(), 0);
      EXPECT_EQ(parseNpy(serializeNpy(t), "mem.npy").shape(), shape);
      std::string file = path("t.npy").string();
      writeNpy(file, t);
      Tensor back = readNpy(file);
      EXPECT_EQ(back.shape(), shape);
      EXPECT_EQ(back.dtype(), dtype);
      // Through a pipe, which has no size to check the header against.
      std::string fifo = path("pipe.npy").string();
      ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
      std::thread writer([&] { std::ofstream(fifo, std::ios::binary) << serializeNpy(t); });
      Tensor piped = readNpy(fifo);
      writer.join();
      fs::remove(fifo);
      EXPECT_EQ(piped.shape(), shape);
    }
}

// With no elements there is nothing to transpose: Fortran order (as Julia marks every array) reads
// like C order, whatever the shape.
TEST_F(EmptyArrays, FortranOrderWithoutElementsIsAccepted) {
  for (const Shape &shape : kEmptyShapes) {
    SCOPED_TRACE(shapeString(shape));
    std::string dict = fmt::format("{{'descr': '<f4', 'fortran_order': True, 'shape': {}, }}", tupleText(shape));
    Tensor t;
    EXPECT_NO_THROW(t = parseNpy(npyWithoutData(dict), "julia.npy"));
    EXPECT_EQ(t.shape(), shape);
  }
}

TEST_F(EmptyArrays, ALayerTakesThemThroughTheApi) {
  writeNpy(path("x.npy").string(), Tensor(DType::F32, {0, 3}));
  Layer softmax(lib(), "Softmax", {});
  std::map<std::string, Tensor> out = softmax.forward({{"X", readNpy(path("x.npy").string())}});
  EXPECT_EQ(out.at("Y").shape(), (Shape{0, 3}));
  std::map<std::string, Tensor> grads = softmax.backward({{"Y", Tensor(DType::F32, {0, 3})}});
  EXPECT_EQ(grads.at("X").shape(), (Shape{0, 3}));
  writeNpy(path("y.npy").string(), out.at("Y"));
  EXPECT_EQ(readNpy(path("y.npy").string()).shape(), (Shape{0, 3}));
}

// A training batch norm needs more than one value per channel: the error names the empty input.
TEST_F(EmptyArrays, ALayerThatRefusesOneNamesTheInput) {
  Layer bn(lib(), "SyncBatchNorm", {{"num_features", "3"}});
  std::string m = errorOf([&] { bn.forward({{"X", Tensor(DType::F32, {0, 3, 4})}}); });
  EXPECT_THAT(m, HasSubstr("batchnorm.enc:"));
  EXPECT_THAT(m, HasSubstr("layer SyncBatchNorm requires"));
  EXPECT_THAT(m, HasSubstr("for input X [0, 3, 4] (no elements)"));
}

TEST_F(EmptyArrays, EvalReadsAndWritesThem) {
  writeNpy(path("x.npy").string(), Tensor(DType::F32, {0, 3}));
  CliResult r = encc("eval --layer Softmax --input X=x.npy --grad Y=random:0,3 --out out");
  ASSERT_EQ(r.status, 0) << r;
  // An empty tensor has no minimum or maximum to show.
  EXPECT_THAT(r.out, HasSubstr("Y: f32 [0, 3] -> out/Y.npy  (no elements)"));
  EXPECT_THAT(r.out, HasSubstr("grad X: [0, 3] -> out/grad/X.npy  (no elements)"));
  EXPECT_EQ(readNpy(path("out/Y.npy").string()).shape(), (Shape{0, 3}));
  EXPECT_EQ(readNpy(path("out/grad/X.npy").string()).shape(), (Shape{0, 3}));

  writeNpy(path("x4.npy").string(), Tensor(DType::F32, {0, 3, 8, 8}));
  expectFailure(encc("eval --layer SyncBatchNorm --set num_features=3 --input X=x4.npy --out bad"),
                {"batchnorm.enc:", "layer SyncBatchNorm requires", "for input X [0, 3, 8, 8] (no elements)"});
}

} // namespace
} // namespace enc
