// Style transfer (examples/style/style.enc): the generated image, started at the content image,
// is optimized with Adam against a content loss and a Gram-matrix style loss computed by random
// fixed convolutions; the style image's Gram matrices are the targets of the network's
// Inspiration layers (setParam("ins1.G", ...), MSG-Net's set_target). Images come from
// python3-skimage's sample data, downscaled to S x S.
//
//   build/examples/style [--steps N] [--size S] [--out out.png]
//   build/examples/style --small          a quick run (the test suite's)
//
// Prints the losses every few steps; exits non-zero unless the style loss fell at least 10x
// from the content image's.
#include "Images.h"

#include <enc/enc.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <iostream>

using namespace enc;

namespace {

const char *kDefaultData = "/usr/lib/python3/dist-packages/skimage/data";
const char *kPackageHint = "install Debian's python3-skimage (scripts/setup.sh does), or give --data DIR";

struct Config {
  int steps = 300, size = 96, every = 25, channels = 16;
  double lr = 0.02, styleWeight = 1e5;
  std::string data = kDefaultData, content = "chelsea.png", style = "hubble_deep_field.jpg", out = "out.png";
};

Tensor toTensor(const images::Image &im) {
  Tensor t(DType::F32, {1, images::Image::kChannels, im.height, im.width});
  std::copy(im.pixels.begin(), im.pixels.end(), t.dataAs<float>());
  return t;
}

// [1, n, n]: the identity, for the Inspiration layers' weights.
Tensor identity(int n) {
  Tensor t(DType::F32, {1, n, n});
  float *p = t.dataAs<float>();
  for (int i = 0; i < n * n; ++i) p[i] = i % (n + 1) == 0 ? 1.0f : 0.0f;
  return t;
}

int run(const Config &c) {
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  images::Image content = images::squareThumbnail(images::loadRgb(c.data, c.content, kPackageHint), c.size);
  images::Image style = images::squareThumbnail(images::loadRgb(c.data, c.style, kPackageHint), c.size);

  auto lib = Library::fromFile(STYLE_ENC);
  LayerOptions options;
  options.seed = 3;
  std::map<std::string, std::string> settings{{"S", std::to_string(c.size)},
                                              {"C", std::to_string(c.channels)},
                                              {"style_weight", fmt::format("{}", c.styleWeight)}};
  Layer model(lib, "StyleTransfer", settings, options);
  Layer features(lib, "StyleFeatures", {{"C", std::to_string(c.channels)}}, options);
  for (const char *name : {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"})
    features.setParam(name, model.params().at(name)); // the same random extractor
  auto targets = features.forward({{"X", toTensor(style)}});
  model.setParam("ins1.G", targets.at("G1"));
  model.setParam("ins2.G", targets.at("G2"));
  model.setParam("ins1.weight", identity(c.channels));
  model.setParam("ins2.weight", identity(2 * c.channels));

  fmt::print("style transfer: content {}, style {}, {}x{}, {} steps of Adam (lr {}) on the CPU\n", content.name,
             style.name, c.size, c.size, c.steps, c.lr);
  Adam opt({.lr = c.lr});
  Tensor x = toTensor(content), image;
  double firstStyle = 0, lastStyle = 0, lastContent = 0;
  for (int step = 0; step <= c.steps; ++step) {
    auto out = model.forward({{"Content", x}});
    lastStyle = out.at("StyleLoss").cpu().at(0);
    lastContent = out.at("ContentLoss").cpu().at(0);
    image = out.at("Image");
    if (step == 0) firstStyle = lastStyle;
    if (step % c.every == 0 || step == c.steps) {
      fmt::print("step {:4}  style loss {:.4e}  content loss {:.4e}  loss {:.4e}  {:6.1f} s\n", step, lastStyle,
                 lastContent, out.at("Loss").cpu().at(0), seconds());
      std::fflush(stdout);
    }
    if (step == c.steps) break;
    auto grads = model.backward("Loss");
    // Only the image is optimized: the extractor, the decoder and the targets stay as they are.
    opt.step(model, {{"image", grads.at("image")}, {"coarse", grads.at("coarse")}});
  }
  images::writePng(c.out, c.size, c.size, image.cpu().dataAs<float>());
  fmt::print("style loss {:.4e} -> {:.4e} ({:.1f}x lower), content loss 0 -> {:.4e}; wrote {} in {:.1f} s\n",
             firstStyle, lastStyle, firstStyle / lastStyle, lastContent, c.out, seconds());
  if (!(lastStyle * 10 <= firstStyle)) {
    std::fflush(stdout);
    fmt::print(stderr, "style: the style loss fell less than 10x: {} -> {}\n", firstStyle, lastStyle);
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Config c;
  CLI::App app{"Style transfer (examples/style/style.enc): optimizes an image, starting from the content image, so "
               "that its random-convolution features keep the content's and their Gram matrices match the style "
               "image's. Writes the result as a PNG.",
               "style"};
  int steps = c.steps, size = c.size;
  bool small = false;
  app.add_option("--steps", steps, "Adam steps (default 300; 100 with --small)")->check(CLI::Range(1, 1000000));
  app.add_option("--size", size, "the images are downscaled to S x S, S even (default 96; 32 with --small)")
      ->check(CLI::Range(4, 4096))
      ->check(CLI::Validator([](std::string &v) { return std::stoi(v) % 2 ? "must be even" : ""; }, "EVEN"));
  app.add_option("--lr", c.lr, "Adam's learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--style-weight", c.styleWeight, "the style loss's weight against the content loss's 1")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--content", c.content, "the content image in the data directory")->capture_default_str();
  app.add_option("--style", c.style, "the style image in the data directory")->capture_default_str();
  app.add_option("--out", c.out, "the PNG to write")->capture_default_str();
  app.add_flag("--small", small, "a quick run (the test suite's)");
  app.add_option("--data", c.data, "the images (python3-skimage's)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    app.exit(e);
    return 2;
  }
  if (small) c.steps = 100, c.size = 32, c.every = 10;
  if (app.count("--steps")) c.steps = steps;
  if (app.count("--size")) c.size = size;
  try {
    return run(c);
  } catch (const Error &e) {
    std::cerr << "style: " << e.render() << "\n";
    return 1;
  }
}
