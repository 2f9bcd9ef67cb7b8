// Style transfer (examples/style/style.enc) against a content loss and a Gram-matrix style loss
// computed by random fixed convolutions, in two modes:
//
// default: the generated image itself is optimized with Adam, starting from the content image;
//   the style image's Gram matrices are the targets of Inspiration layers.
// --train: MSG-Net's way. A feed-forward generator (encoder, Inspiration, residual blocks,
//   UpsampleConv2d decoder, batch norm) is trained with Adam on batches of random crops
//   (mirrored and rotated) of other images, then applied in one forward pass (evaluation mode:
//   running statistics) to the content image, which training never sees. The Inspiration
//   layer's target is the Gram matrix of the generator's own encoder features of the style
//   image (setParam("net.ins.G", ...), MSG-Net's set_target), recomputed before every step
//   since the encoder trains. Reports every 20 steps: style and content loss (means over those
//   steps and the ranks), images per second (training passes and the target's), seconds since
//   the start.
//
// Images come from python3-skimage's sample data, their largest centered square downscaled to
// S x S (--size); training crops come from the training images at that scale too.
//
//   build/examples/style [--steps N] [--size S] [--out out.png]          image optimization
//   build/examples/style --train [--steps N] [--batch B] [--out out.png] the trained generator
//   build/examples/style --small ...                                    a quick run (the test suite's)
//   encc launch -n 2 -- build/examples/style --train                    data-parallel: each rank trains on
//                                                                       its rows of every batch, batch norm
//                                                                       over all of them
//
// Exits non-zero unless the result's style loss is at least 10x lower than the content image's
// own (and, --train, unless the training loss fell; ranks print their parameter checksums).
#include "Images.h"
#include "Training.h"

#include <enc/enc.h>

#include "runtime/Rng.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <iostream>

using namespace enc;

namespace {

const char *kDefaultData = "/usr/lib/python3/dist-packages/skimage/data";
const char *kPackageHint = "install Debian's python3-skimage (scripts/setup.sh does), or give --data DIR";
// The generator's training images: colour photographs other than the default content image.
// The content and style images are left out when they are among them.
const char *kTrainingImages[] = {"astronaut.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"};

struct Config {
  bool train = false;
  int steps = 300, size = 96, every = 25, channels = 16; // channels: the loss network's
  // --train: crops per batch and their size, the generator's width and residual blocks.
  int batch = 16, crop = 32, generatorChannels = 16, blocks = 2;
  double lr = 0.02, styleWeight = 1e5, tvWeight = 0.05;
  std::string data = kDefaultData, content = "chelsea.png", style = "hubble_deep_field.jpg", out = "out.png";
  LayerOptions options;
};

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

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

// Makes the r * r sub-pixel filters of each output channel of an UpsampleConv2d weight
// [out * r * r, in, kh, kw] equal (the first one's), so that the untrained pixel shuffle
// upsamples like nearest-neighbour: no checkerboard pattern for training to undo (the ICNR
// initialization of Aitken et al., "Checkerboard artifact free sub-pixel convolution", 2017).
Tensor subpixelAlike(const Tensor &weight, int r) {
  Tensor w = weight.cpu().clone();
  const int64_t per = w.numel() / w.shape()[0];
  float *p = w.dataAs<float>();
  for (int64_t o = 0; o < w.shape()[0]; ++o)
    if (o % (r * r)) std::copy(p + (o - o % (r * r)) * per, p + (o - o % (r * r) + 1) * per, p + o * per);
  return w;
}

// Sets every parameter and buffer of `to` from `from`'s of the same name after `prefix`.
void copyParams(Layer &to, const Layer &from, const std::string &prefix) {
  for (const auto &[name, value] : to.params()) to.setParam(name, from.params().at(prefix + name));
}

// The result's style loss must be at least 10x lower than the content image's own.
int report(double contentStyle, double resultStyle, double resultContent, const std::string &out, double seconds) {
  fmt::print("style loss {:.4e} -> {:.4e} ({:.1f}x lower), content loss 0 -> {:.4e}; wrote {} in {:.1f} s\n",
             contentStyle, resultStyle, contentStyle / resultStyle, resultContent, out, seconds);
  if (resultStyle * 10 <= contentStyle) return 0;
  std::fflush(stdout);
  fmt::print(stderr, "style: the style loss fell less than 10x: {} -> {}\n", contentStyle, resultStyle);
  return 1;
}

int optimizeImage(const Config &c) {
  auto start = Clock::now();
  images::Image content = images::squareThumbnail(images::loadRgb(c.data, c.content, kPackageHint), c.size);
  images::Image style = images::squareThumbnail(images::loadRgb(c.data, c.style, kPackageHint), c.size);

  auto lib = Library::fromFile(STYLE_ENC);
  LayerOptions options = c.options;
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

  fmt::print("style transfer: content {}, style {}, {}x{}, {} steps of Adam (lr {}) on the {}\n", content.name,
             style.name, c.size, c.size, c.steps, c.lr,
             options.device == Device::CUDA ? cuda::Gpu::require().name() : "CPU");
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
                 lastContent, out.at("Loss").cpu().at(0), secondsSince(start));
      std::fflush(stdout);
    }
    if (step == c.steps) break;
    auto grads = model.backward("Loss");
    // Only the image is optimized: the extractor, the decoder and the targets stay as they are.
    opt.step(model, {{"image", grads.at("image")}, {"coarse", grads.at("coarse")}});
  }
  images::writePng(c.out, c.size, c.size, image.cpu().dataAs<float>());
  return report(firstStyle, lastStyle, lastContent, c.out, secondsSince(start));
}

// Random crops of the training images (each downscaled to S x S as the content image is, so
// that textures have the same scale in training and use), mirrored and rotated at random.
class Crops {
public:
  Crops(const Config &c) : crop_(c.crop) {
    for (const char *file : kTrainingImages)
      if (file != c.content && file != c.style)
        images_.push_back(images::squareThumbnail(images::loadRgb(c.data, file, kPackageHint), c.size));
  }

  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto &im : images_) n.push_back(im.name);
    return n;
  }

  // `size` crops, the images in turn.
  Tensor batch(Rng &rng, int size) const {
    const int C = images::Image::kChannels;
    Tensor x(DType::F32, {size, C, crop_, crop_});
    for (int i = 0; i < size; ++i) {
      const images::Image &im = images_[i % images_.size()];
      auto pick = [&](int n) { return static_cast<int>(rng.uniform() * n); };
      int cx = pick(im.width - crop_ + 1), cy = pick(im.height - crop_ + 1), transform = pick(8);
      images::crop(im, cx, cy, crop_, transform, x.dataAs<float>() + static_cast<size_t>(i) * C * crop_ * crop_);
    }
    return x;
  }

private:
  int crop_;
  std::vector<images::Image> images_;
};

int trainGenerator(const Config &c) {
  auto start = Clock::now();
  std::shared_ptr<ProcessGroup> group = initDistributed(); // under encc launch
  const int rank = group ? group->rank() : 0, ranks = group ? group->size() : 1;
  if (c.batch % ranks != 0) throw Error(fmt::format("a batch of {} does not split over {} ranks", c.batch, ranks));
  images::Image content = images::squareThumbnail(images::loadRgb(c.data, c.content, kPackageHint), c.size);
  images::Image style = images::squareThumbnail(images::loadRgb(c.data, c.style, kPackageHint), c.size);
  Crops crops(c);

  auto lib = Library::fromFile(STYLE_ENC);
  const std::string C = std::to_string(c.generatorChannels), F = std::to_string(c.channels);
  Layer model(lib, "GeneratorTraining",
              {{"S", std::to_string(c.crop)},
               {"C", C},
               {"blocks", std::to_string(c.blocks)},
               {"F", F},
               {"style_weight", fmt::format("{}", c.styleWeight)},
               {"tv_weight", fmt::format("{}", c.tvWeight)}},
              c.options);
  // Helpers that take the training network's tensors: the style image's Gram matrices (the
  // style loss's targets), the encoder's (the Inspiration layer's target), and at the end the
  // generator and the losses on the held-out content image, evaluation mode.
  LayerOptions helper = c.options;
  helper.dataParallel = false;
  Layer styleGrams(lib, "RandomGrams", {{"F", F}}, helper);
  Layer encoderGram(lib, "EncoderGram", {{"C", C}}, helper);
  LayerOptions evaluation = helper;
  evaluation.training = false;
  Layer generator(lib, "Generator", {{"C", C}, {"blocks", std::to_string(c.blocks)}}, evaluation);
  Layer losses(lib, "StyleLosses", {{"F", F}}, evaluation);

  model.setParam("net.up.weight", subpixelAlike(model.params().at("net.up.weight"), 2));
  copyParams(styleGrams, model, "loss.");
  const Tensor styleImage = toTensor(style);
  auto targets = styleGrams.forward({{"X", styleImage}});
  model.setParam("loss.style1", targets.at("G1"));
  model.setParam("loss.style2", targets.at("G2"));

  if (rank == 0)
    fmt::print("style transfer network: style {}, trained on {}x{} crops of {} ({} per batch{}), {} steps of Adam "
               "(lr {}) on the {}; applied to {} at {}x{}\n",
               style.name, c.crop, c.crop, fmt::join(crops.names(), ", "), c.batch,
               ranks > 1 ? fmt::format(", {} ranks", ranks) : "", c.steps, c.lr,
               c.options.device == Device::CUDA ? cuda::Gpu::require().name() : "CPU", content.name, c.size, c.size);
  Adam opt({.lr = c.lr});
  Rng rng(1); // the same on every rank: each takes its rows of the same batches
  const int64_t mine = c.batch / ranks;
  double sums[3] = {0, 0, 0}, trainTime = 0; // style, content and whole loss since the last report
  double firstLoss = 0, lastLoss = 0;
  for (int step = 1; step <= c.steps; ++step) {
    Tensor x = crops.batch(rng, c.batch);
    if (ranks > 1) x = examples::rowsOf(x, rank * mine, mine);
    auto t0 = Clock::now();
    copyParams(encoderGram, model, "net.");
    model.setParam("net.ins.G", encoderGram.forward({{"X", styleImage}}).at("G"));
    auto out = model.forward({{"Content", x}});
    opt.step(model, model.backward("Loss"));
    trainTime += secondsSince(t0);
    sums[0] += out.at("StyleLoss").cpu().at(0);
    sums[1] += out.at("ContentLoss").cpu().at(0);
    sums[2] += out.at("Loss").cpu().at(0);
    if (step == 1) { // the first step's loss, over all ranks, for finishTraining's check that it fell
      firstLoss = sums[2] / ranks;
      if (group) group->allreduceSum(&firstLoss, 1);
    }
    if (step % c.every == 0 || step == c.steps) {
      const int n = (step - 1) % c.every + 1; // steps since the last report
      if (group) group->allreduceSum(sums, 3);
      double styleLoss = sums[0] / (n * ranks), contentLoss = sums[1] / (n * ranks), loss = sums[2] / (n * ranks);
      lastLoss = loss;
      if (rank == 0)
        fmt::print("step {:4}  style loss {:.4e}  content loss {:.4e}  loss {:.4e}  {:5.0f} images/s  {:6.1f} s\n",
                   step, styleLoss, contentLoss, loss, n * c.batch / trainTime, secondsSince(start));
      std::fflush(stdout);
      sums[0] = sums[1] = sums[2] = trainTime = 0;
    }
  }

  // The trained generator (running statistics) on the held-out content image, every rank alike.
  copyParams(generator, model, "net.");
  copyParams(losses, model, "loss.");
  Tensor x = toTensor(content);
  Tensor y = generator.forward({{"X", x}}).at("Y");
  auto result = losses.forward({{"Y", y}, {"Content", x}});
  auto own = losses.forward({{"Y", x}, {"Content", x}});
  int status = 0;
  if (rank == 0) {
    images::writePng(c.out, c.size, c.size, y.cpu().dataAs<float>());
    status = report(own.at("StyleLoss").cpu().at(0), result.at("StyleLoss").cpu().at(0),
                    result.at("ContentLoss").cpu().at(0), c.out, secondsSince(start));
  }
  int trained = examples::finishTraining("style", model, rank, ranks, "", firstLoss, lastLoss);
  return status ? status : trained;
}

} // namespace

int main(int argc, char **argv) {
  Config c;
  CLI::App app{"Style transfer (examples/style/style.enc): makes the content image take on the style image's "
               "texture, keeping its random-convolution features and matching their Gram matrices to the style "
               "image's. By default it optimizes the image itself; --train trains a feed-forward transfer network "
               "(MSG-Net's generator) on crops of other images and applies it. Writes the result as a PNG.",
               "style"};
  // Options whose defaults depend on the mode and --small: read into `given`, applied over
  // the defaults after parsing.
  Config given;
  std::string device = "cpu";
  bool train = false, small = false;
  auto even = CLI::Validator([](std::string &v) { return std::stoi(v) % 2 ? "must be even" : ""; }, "EVEN");
  app.add_flag("--train", train, "train the transfer network and apply it, instead of optimizing the image");
  app.add_option("--steps", given.steps, "Adam steps (default 300; 100 with --small; --train: 300, 60 with --small)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--size", given.size,
                 "the images are downscaled to S x S, S even (default 96; 32 with --small; --train: 128, 64 with "
                 "--small)")
      ->check(CLI::Range(4, 4096))
      ->check(even);
  app.add_option("--batch", given.batch, "--train: crops per batch (default 16; 8 with --small)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--crop", given.crop, "--train: the crops' size, even, at most --size (default 32; 24 with --small)")
      ->check(CLI::Range(4, 4096))
      ->check(even);
  app.add_option("--lr", given.lr, "Adam's learning rate (default 0.02; --train: 0.002)")->check(CLI::PositiveNumber);
  app.add_option("--style-weight", given.styleWeight,
                 "the style loss's weight against the content loss's 1 (default 1e5; --train: 2e4)")
      ->check(CLI::PositiveNumber);
  app.add_option("--tv-weight", given.tvWeight, "--train: the total variation's weight (default 0.05)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--content", c.content, "the content image in the data directory")->capture_default_str();
  app.add_option("--style", c.style, "the style image in the data directory")->capture_default_str();
  app.add_option("--out", c.out, "the PNG to write")->capture_default_str();
  app.add_option("--device", device, "where to run")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
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
  c.train = train;
  if (train) {
    c.steps = 300, c.size = 128, c.lr = 0.002, c.styleWeight = 2e4, c.every = 20;
    if (small) c.steps = 60, c.size = 64, c.batch = 8, c.crop = 24, c.every = 10;
  } else if (small) {
    c.steps = 100, c.size = 32, c.every = 10;
  }
  if (app.count("--steps")) c.steps = given.steps;
  if (app.count("--size")) c.size = given.size;
  if (app.count("--batch")) c.batch = given.batch;
  if (app.count("--crop")) c.crop = given.crop;
  if (app.count("--lr")) c.lr = given.lr;
  if (app.count("--style-weight")) c.styleWeight = given.styleWeight;
  if (app.count("--tv-weight")) c.tvWeight = given.tvWeight;
  if (!train)
    for (const char *option : {"--batch", "--crop", "--tv-weight"})
      if (app.count(option)) {
        std::cerr << "style: " << option << " applies to --train only\n";
        return 2;
      }
  if (train && c.crop > c.size) {
    std::cerr << fmt::format("style: --crop {} is larger than the images (--size {})\n", c.crop, c.size);
    return 2;
  }
  c.options.device = *parseDevice(device);
  c.options.seed = 3;
  c.options.dataParallel = true; // under encc launch: backward averages the parameter gradients over the ranks
  try {
    // Fail now, not after training, when the PNG cannot be written there.
    std::filesystem::path outDir = std::filesystem::path(c.out).parent_path();
    if (!outDir.empty() && !std::filesystem::is_directory(outDir))
      throw Error(fmt::format("--out {}: directory {} not found", c.out, outDir.string()));
    ProcessGroupOptions launched;
    if (!c.train && processGroupOptionsFromEnvironment(launched) && launched.size > 1)
      throw Error("image optimization runs in one process; under encc launch, give --train");
    return c.train ? trainGenerator(c) : optimizeImage(c);
  } catch (const Error &e) {
    std::cerr << "style: " << e.render() << "\n";
    return 1;
  }
}
