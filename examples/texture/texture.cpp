// Deep TEN texture classification (examples/texture/texture.enc) on scikit-image's sample
// images: each image is one class, the network learns to tell 32x32 RGB crops of them apart
// (AdamW, cosine learning-rate schedule).
// Training crops come from the left 75 % of each image (random position, mirrored and rotated
// by multiples of 90 degrees); the held-out crops come from the right 25 %, which training
// never sees. Everything is seeded, so a run repeats exactly on the same machine.
//
//   build/examples/texture [--epochs N] [--device cpu|cuda] [--out model.safetensors]
//   build/examples/texture --eval model.safetensors     held-out accuracy of a saved model
//   build/examples/texture --small ...                  a quick run (the test suite's)
//   encc launch -n 2 -- build/examples/texture          data-parallel: each rank trains on its
//                                                       half of every batch, batch norm over all of it
//
// One line per epoch: loss and accuracy on that epoch's training crops, held-out accuracy (in
// evaluation mode: running statistics), training images per second, seconds since start.
// Training exits non-zero if the loss did not fall.
#include "Images.h"
#include "Training.h"

#include <enc/enc.h>

#include "runtime/Rng.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <iostream>

using namespace enc;

namespace {

const char *kImages[] = {"brick.png", "grass.png", "gravel.png", "moon.png",
                         "camera.png", "coffee.png", "chelsea.png", "rocket.jpg"};
const char *kDefaultData = "/usr/lib/python3/dist-packages/skimage/data";
const char *kPackageHint = "install Debian's python3-skimage (scripts/setup.sh does), or give --data DIR";

struct Config {
  int epochs = 12, steps = 40, batch = 64, crop = 32, heldOutPerClass = 32;
  double lr = 0.01;
  std::string data = kDefaultData, out, eval;
  LayerOptions options;
};

// A batch of crops and their classes, as the network's inputs.
struct Batch {
  Tensor x, t;
};

class Dataset {
public:
  Dataset(const Config &c) : crop_(c.crop) {
    for (const char *file : kImages) {
      images_.push_back(images::loadRgb(c.data, file, kPackageHint));
      const images::Image &im = images_.back();
      if (im.width / 4 < crop_ || im.height < crop_)
        throw Error(fmt::format("image {} ({}x{}) is too small for {}x{} crops", file, im.width, im.height, crop_, crop_));
    }
    // The held-out crops: fixed, from the right quarter, untransformed.
    Rng rng(2);
    for (int i = 0; i < c.heldOutPerClass; ++i)
      for (int k = 0; k < classes(); ++k) heldOut_.push_back(place(k, rng, false));
  }

  int classes() const { return static_cast<int>(images_.size()); }
  const std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto &im : images_) n.push_back(im.name);
    return n;
  }

  // `size` random training crops, the classes in turn.
  Batch training(Rng &rng, int size) const {
    std::vector<Crop> crops;
    for (int i = 0; i < size; ++i) crops.push_back(place(i % classes(), rng, true));
    return batch(crops.data(), size);
  }

  int heldOutCount() const { return static_cast<int>(heldOut_.size()); }
  Batch heldOut(int first, int size) const { return batch(heldOut_.data() + first, size); }

private:
  struct Crop {
    int cls, x, y, transform;
  };

  // Training crops lie in columns [0, split), held-out ones in [split, width).
  Crop place(int cls, Rng &rng, bool train) const {
    const images::Image &im = images_[cls];
    int split = im.width * 3 / 4;
    int lo = train ? 0 : split, hi = train ? split - crop_ : im.width - crop_;
    auto pick = [&](int a, int b) { return a + static_cast<int>(rng.uniform() * (b - a + 1)); };
    return {cls, pick(lo, hi), pick(0, im.height - crop_), train ? pick(0, 7) : 0};
  }

  Batch batch(const Crop *crops, int size) const {
    const int C = images::Image::kChannels;
    Batch b{Tensor(DType::F32, {size, C, crop_, crop_}), Tensor(DType::F32, {size})};
    float *x = b.x.dataAs<float>();
    for (int i = 0; i < size; ++i) {
      const Crop &c = crops[i];
      images::crop(images_[c.cls], c.x, c.y, crop_, c.transform, x + static_cast<size_t>(i) * C * crop_ * crop_);
      b.t.set(i, c.cls);
    }
    return b;
  }

  int crop_;
  std::vector<images::Image> images_;
  std::vector<Crop> heldOut_;
};

// Rows [first, first + n) of a batch: a rank's share.
Batch rowsOf(const Batch &b, int64_t first, int64_t n) {
  return {examples::rowsOf(b.x, first, n), examples::rowsOf(b.t, first, n)};
}

// Fraction of the held-out crops `model` (an evaluation-mode layer) classifies correctly, in
// all and per class.
struct Accuracy {
  double all = 0;
  std::vector<double> perClass;
};

Accuracy heldOutAccuracy(Layer &model, const Dataset &data, int batch) {
  std::vector<int> correct(static_cast<size_t>(data.classes())), count(correct.size());
  for (int first = 0; first < data.heldOutCount(); first += batch) {
    Batch b = data.heldOut(first, batch);
    auto out = model.forward({{"X", b.x}, {"T", b.t}});
    std::vector<int64_t> predicted = argmax(out.at("Logits"));
    for (int i = 0; i < batch; ++i) {
      auto cls = static_cast<int64_t>(b.t.at(i));
      correct[cls] += predicted[i] == cls;
      ++count[cls];
    }
  }
  Accuracy a;
  for (size_t k = 0; k < correct.size(); ++k) {
    a.all += static_cast<double>(correct[k]) / data.heldOutCount();
    a.perClass.push_back(static_cast<double>(correct[k]) / count[k]);
  }
  return a;
}

void printHeldOut(const Accuracy &a, const Dataset &data) {
  std::vector<std::string> names = data.names(), parts;
  for (size_t k = 0; k < names.size(); ++k) parts.push_back(fmt::format("{} {:.0f}%", names[k], 100 * a.perClass[k]));
  fmt::print("per class: {}\n", fmt::join(parts, ", "));
  fmt::print("held-out accuracy {:.2f}% ({} crops of {} classes)\n", 100 * a.all, data.heldOutCount(), data.classes());
}

int run(const Config &c) {
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  std::shared_ptr<ProcessGroup> group = c.eval.empty() ? initDistributed() : nullptr; // under encc launch
  const int rank = group ? group->rank() : 0, ranks = group ? group->size() : 1;
  if (c.batch % ranks != 0) throw Error(fmt::format("a batch of {} does not split over {} ranks", c.batch, ranks));
  Dataset data(c);
  auto lib = Library::fromFile(TEXTURE_ENC);
  std::map<std::string, std::string> settings{{"channels", std::to_string(images::Image::kChannels)},
                                              {"classes", std::to_string(data.classes())}};
  LayerOptions evalOptions = c.options;
  evalOptions.training = false;
  Layer eval(lib, "DeepTen", settings, evalOptions);

  if (!c.eval.empty()) {
    eval.loadState(c.eval);
    printHeldOut(heldOutAccuracy(eval, data, c.batch), data);
    return 0;
  }

  if (rank == 0)
    fmt::print("Deep TEN on {} classes ({}), {}x{} RGB crops, training on the {}{}\n", data.classes(),
               fmt::join(data.names(), ", "), c.crop, c.crop,
               c.options.device == Device::CUDA ? cuda::Gpu::require().name() : "CPU",
               ranks > 1 ? fmt::format(", {} ranks", ranks) : "");
  Layer model(lib, "DeepTen", settings, c.options);
  AdamW opt({.lr = c.lr, .weightDecay = 1e-4});
  CosineAnnealingLR schedule(opt, c.epochs);
  Rng rng(1); // the same on every rank: each takes its rows of the same batches
  const int64_t mine = c.batch / ranks;
  double firstLoss = 0, lastLoss = 0;
  Accuracy accuracy;
  for (int epoch = 0; epoch < c.epochs; ++epoch) {
    double stats[2] = {0, 0}; // loss (mean over steps and ranks), correct training crops
    double trainTime = 0;
    for (int step = 0; step < c.steps; ++step) {
      Batch b = data.training(rng, c.batch);
      if (ranks > 1) b = rowsOf(b, rank * mine, mine);
      auto t0 = Clock::now();
      auto out = model.forward({{"X", b.x}, {"T", b.t}});
      auto grads = model.backward("Loss");
      opt.step(model, grads);
      trainTime += std::chrono::duration<double>(Clock::now() - t0).count();
      stats[0] += out.at("Loss").cpu().at(0) / (c.steps * ranks);
      std::vector<int64_t> predicted = argmax(out.at("Logits"));
      for (int64_t i = 0; i < mine; ++i) stats[1] += predicted[i] == static_cast<int64_t>(b.t.at(i));
    }
    if (group) group->allreduceSum(stats, 2);
    double loss = stats[0];
    schedule.step();
    for (const auto &[name, value] : model.params()) eval.setParam(name, value); // weights and running statistics
    accuracy = heldOutAccuracy(eval, data, c.batch);
    if (epoch == 0) firstLoss = loss;
    lastLoss = loss;
    if (rank == 0)
      fmt::print("epoch {:3}  loss {:.4f}  train {:5.1f}%  held-out {:5.1f}%  {:6.0f} images/s  {:6.1f} s\n", epoch + 1,
                 loss, 100.0 * stats[1] / (c.steps * c.batch), 100 * accuracy.all, c.steps * c.batch / trainTime,
                 seconds());
    std::fflush(stdout);
  }
  if (rank == 0) printHeldOut(accuracy, data);
  return examples::finishTraining("texture", model, rank, ranks, c.out, firstLoss, lastLoss);
}

} // namespace

int main(int argc, char **argv) {
  Config c;
  CLI::App app{"Trains a small Deep TEN (examples/texture/texture.enc) to tell apart crops of scikit-image's sample "
               "images, one class per image, and reports the accuracy on crops from a part of each image that "
               "training does not see.",
               "texture"};
  int epochs = c.epochs;
  std::string device = "cpu";
  bool small = false;
  app.add_option("--epochs", epochs, "training epochs (default 12; 4 with --small)")->check(CLI::Range(1, 100000));
  app.add_option("--device", device, "where to train")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--out", c.out, "save the trained parameters and buffers (safetensors)");
  app.add_option("--eval", c.eval, "load a saved model and report its held-out accuracy only");
  app.add_flag("--small", small,
               "a quick run: fewer and smaller batches, fewer held-out crops (give it with --eval too: it sets the "
               "held-out crops)");
  app.add_option("--data", c.data, "the images (python3-skimage's)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    app.exit(e);
    return 2;
  }
  if (small) c.steps = 8, c.batch = 32, c.heldOutPerClass = 8, c.epochs = 4;
  if (app.count("--epochs")) c.epochs = epochs;
  c.options.device = *parseDevice(device);
  c.options.seed = 7;
  c.options.dataParallel = true; // under encc launch: backward averages the parameter gradients over the ranks
  try {
    return run(c);
  } catch (const Error &e) {
    std::cerr << "texture: " << e.render() << "\n";
    return 1;
  }
}
