// Where programs find the shipped layers: the build tree's programs the source tree's layers,
// every other program (installed encc, a user's program against the installed package) the
// installed copy, so a build tree that happens to exist does not shadow what was installed.
#include "runtime/Library.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

namespace fs = std::filesystem;

namespace {

class LayerDirectory : public ::testing::Test {
protected:
  fs::path root;
  std::string source, installed, build;

  void SetUp() override {
    root = fs::temp_directory_path() / ("encc-layerdir-" + std::to_string(::getpid()));
    fs::remove_all(root);
    source = (root / "src" / "layers").string();
    installed = (root / "prefix" / "share" / "encc" / "layers").string();
    build = (root / "src" / "build").string();
    fs::create_directories(source);
    fs::create_directories(installed);
    fs::create_directories(build);
  }
  void TearDown() override { fs::remove_all(root); }
};

TEST_F(LayerDirectory, BuildTreeProgramsUseTheSourceTree) {
  EXPECT_EQ(enc::chooseLayerDir(build + "/tools/encc/encc", build, source, installed), source);
  EXPECT_EQ(enc::chooseLayerDir(build + "/tests/enc_unit_tests", build, source, installed), source);
}

TEST_F(LayerDirectory, OtherProgramsUseTheInstalledCopy) {
  EXPECT_EQ(enc::chooseLayerDir((root / "prefix" / "bin" / "encc").string(), build, source, installed), installed);
  EXPECT_EQ(enc::chooseLayerDir("/home/user/app/consumer", build, source, installed), installed);
  // A sibling whose name starts like the build directory is not inside it.
  EXPECT_EQ(enc::chooseLayerDir(build + "-other/app", build, source, installed), installed);
}

TEST_F(LayerDirectory, WhatExistsWinsWhenTheOtherIsGone) {
  fs::remove_all(installed);
  EXPECT_EQ(enc::chooseLayerDir("/home/user/app/consumer", build, source, installed), source);
  fs::create_directories(installed);
  fs::remove_all(source);
  EXPECT_EQ(enc::chooseLayerDir(build + "/tools/encc/encc", build, source, installed), installed);
}

} // namespace
