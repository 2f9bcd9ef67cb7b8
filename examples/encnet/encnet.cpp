// EncNet semantic segmentation (examples/encnet/encnet.enc) on collages of scikit-image's
// sample images: each collage is cut into 2 to 4 regions (the cells of random seed points),
// each region filled from a different image, and every pixel is labelled by the image it
// comes from. The network learns the per-pixel labels (softmax cross-entropy) and, through
// EncModule's SE-loss, which images occur in a collage (AdamW, cosine learning-rate schedule).
// Training collages are cut from the left 75 % of each image (random position, mirrored and
// rotated); held-out ones from the right 25 %, which training never sees.
//
//   build/examples/encnet [--epochs N] [--device cpu|cuda] [--out model.safetensors]
//   build/examples/encnet --small                 a quick run (the test suite's)
//   encc launch -n 2 -- build/examples/encnet     data-parallel: each rank trains on its half of
//                                                 every batch, batch norm over the whole batch
//
// One line per epoch: loss, per-pixel accuracy on that epoch's training collages and on the
// held-out collages (evaluation mode: running statistics), images per second, seconds since
// start. Exits non-zero if the loss did not fall.
#include "Images.h"
#include "Training.h"

#include <enc/enc.h>

#include "runtime/Rng.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>

using namespace enc;

namespace {

const char *kImages[] = {"brick.png", "grass.png", "gravel.png", "moon.png",
                         "camera.png", "coffee.png", "chelsea.png", "rocket.jpg"};
const char *kDefaultData = "/usr/lib/python3/dist-packages/skimage/data";
const char *kPackageHint = "install Debian's python3-skimage (scripts/setup.sh does), or give --data DIR";

struct Config {
  int epochs = 20, steps = 40, batch = 16, size = 32, heldOut = 64;
  double lr = 0.01;
  std::string data = kDefaultData, out;
  LayerOptions options;
};

// Collages and their labels, as the network's inputs: X [B, 3, S, S] pixels, T [B, S, S]
// classes, P [B, classes] 1 for each class that occurs.
struct Batch {
  Tensor x, t, p;
};

class Collages {
public:
  explicit Collages(const Config &c) : size_(c.size) {
    for (const char *file : kImages) {
      images_.push_back(images::loadRgb(c.data, file, kPackageHint));
      const images::Image &im = images_.back();
      if (im.width / 4 < size_ || im.height < size_)
        throw Error(fmt::format("image {} ({}x{}) is too small for {}x{} collages", file, im.width, im.height, size_, size_));
    }
  }

  int classes() const { return static_cast<int>(images_.size()); }

  // `count` collages drawn with `rng`, from the training or the held-out part of the images.
  Batch draw(Rng &rng, int count, bool train) const {
    const int C = images::Image::kChannels, S = size_, K = classes();
    Batch b{Tensor(DType::F32, {count, C, S, S}), Tensor(DType::F32, {count, S, S}), Tensor(DType::F32, {count, K})};
    std::vector<float> patch(static_cast<size_t>(C * S * S));
    auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng.uniform() * (hi - lo + 1)); };
    for (int i = 0; i < count; ++i) {
      // 2-4 distinct classes, each with a seed point; a pixel belongs to its nearest seed.
      int regions = pick(2, 4);
      std::vector<int> cls;
      while (static_cast<int>(cls.size()) < regions) {
        int k = pick(0, K - 1);
        if (std::find(cls.begin(), cls.end(), k) == cls.end()) cls.push_back(k);
      }
      std::vector<std::pair<double, double>> seeds;
      for (int r = 0; r < regions; ++r) seeds.push_back({rng.uniform() * S, rng.uniform() * S});
      std::vector<int> owner(static_cast<size_t>(S * S));
      for (int y = 0; y < S; ++y)
        for (int x = 0; x < S; ++x) {
          int best = 0;
          double bestDistance = 1e300;
          for (int r = 0; r < regions; ++r) {
            double dx = x + 0.5 - seeds[r].first, dy = y + 0.5 - seeds[r].second, d = dx * dx + dy * dy;
            if (d < bestDistance) bestDistance = d, best = r;
          }
          owner[static_cast<size_t>(y * S + x)] = best;
        }
      float *xi = b.x.dataAs<float>() + static_cast<size_t>(i) * C * S * S;
      for (int r = 0; r < regions; ++r) {
        const images::Image &im = images_[static_cast<size_t>(cls[r])];
        int split = im.width * 3 / 4;
        int x0 = train ? pick(0, split - S) : pick(split, im.width - S), y0 = pick(0, im.height - S);
        images::crop(im, x0, y0, S, train ? pick(0, 7) : 0, patch.data());
        for (int p = 0; p < S * S; ++p)
          if (owner[static_cast<size_t>(p)] == r)
            for (int ch = 0; ch < C; ++ch) xi[ch * S * S + p] = patch[static_cast<size_t>(ch * S * S + p)];
        b.p.set(static_cast<int64_t>(i) * K + cls[r], 1.0);
      }
      for (int p = 0; p < S * S; ++p) b.t.set(static_cast<int64_t>(i) * S * S + p, cls[owner[static_cast<size_t>(p)]]);
    }
    return b;
  }

private:
  int size_;
  std::vector<images::Image> images_;
};

// Rows [first, first + n) of every tensor of a batch.
Batch rows(const Batch &b, int64_t first, int64_t n) {
  return {examples::rowsOf(b.x, first, n), examples::rowsOf(b.t, first, n), examples::rowsOf(b.p, first, n)};
}

// Pixels whose highest score is their label, out of all.
int64_t correctPixels(const Tensor &logits, const Tensor &labels) {
  Tensor s = logits.cpu();
  const int64_t B = s.shape()[0], K = s.shape()[1], P = s.shape()[2] * s.shape()[3];
  int64_t correct = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t p = 0; p < P; ++p) {
      int64_t best = 0;
      for (int64_t k = 1; k < K; ++k)
        if (s.at((b * K + k) * P + p) > s.at((b * K + best) * P + p)) best = k;
      correct += best == static_cast<int64_t>(labels.at(b * P + p));
    }
  return correct;
}

int run(const Config &c) {
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  std::shared_ptr<ProcessGroup> group = initDistributed(); // under encc launch or torchrun
  const int rank = group ? group->rank() : 0, ranks = group ? group->size() : 1;
  if (c.batch % ranks != 0) throw Error(fmt::format("--batch {} does not split over {} ranks", c.batch, ranks));
  Collages data(c);
  auto lib = Library::fromFile(ENCNET_ENC);
  std::map<std::string, std::string> settings{{"channels", std::to_string(images::Image::kChannels)},
                                              {"classes", std::to_string(data.classes())}};
  Layer model(lib, "EncNet", settings, c.options);
  LayerOptions evalOptions = c.options;
  evalOptions.training = false; // running statistics: no collectives, every rank evaluates all of held-out
  Layer eval(lib, "EncNet", settings, evalOptions);
  if (rank == 0)
    fmt::print("EncNet on {}x{} collages of {} images, training on the {}{}\n", c.size, c.size, data.classes(),
               c.options.device == Device::CUDA ? cuda::Gpu::require().name() : "CPU",
               ranks > 1 ? fmt::format(", {} ranks", ranks) : "");

  Rng heldOutRng(2);
  Batch heldOut = data.draw(heldOutRng, c.heldOut, false);
  AdamW opt({.lr = c.lr, .weightDecay = 1e-4});
  CosineAnnealingLR schedule(opt, c.epochs);
  Rng rng(1); // the same on every rank: each takes its rows of the same batches
  const int64_t mine = c.batch / ranks, pixels = static_cast<int64_t>(c.size) * c.size;
  double firstLoss = 0, lastLoss = 0;
  for (int epoch = 0; epoch < c.epochs; ++epoch) {
    double stats[2] = {0, 0}; // loss summed over steps and ranks, correct training pixels
    double trainTime = 0;
    for (int step = 0; step < c.steps; ++step) {
      Batch b = rows(data.draw(rng, c.batch, true), rank * mine, mine);
      auto t0 = Clock::now();
      auto out = model.forward({{"X", b.x}, {"T", b.t}, {"P", b.p}});
      auto grads = model.backward("Loss");
      opt.step(model, grads);
      trainTime += std::chrono::duration<double>(Clock::now() - t0).count();
      stats[0] += out.at("Loss").cpu().at(0) / (c.steps * ranks);
      stats[1] += static_cast<double>(correctPixels(out.at("Logits"), b.t));
    }
    if (group) group->allreduceSum(stats, 2);
    schedule.step();
    for (const auto &[name, value] : model.params()) eval.setParam(name, value); // weights and running statistics
    auto out = eval.forward({{"X", heldOut.x}, {"T", heldOut.t}, {"P", heldOut.p}});
    double heldOutAccuracy = static_cast<double>(correctPixels(out.at("Logits"), heldOut.t)) / (c.heldOut * pixels);
    if (epoch == 0) firstLoss = stats[0];
    lastLoss = stats[0];
    if (rank == 0) {
      fmt::print("epoch {:3}  loss {:.4f}  pixels: train {:5.1f}%  held-out {:5.1f}%  {:6.0f} images/s  {:6.1f} s\n",
                 epoch + 1, stats[0], 100.0 * stats[1] / (c.steps * c.batch * pixels), 100 * heldOutAccuracy,
                 c.steps * c.batch / trainTime, seconds());
      std::fflush(stdout);
    }
  }
  return examples::finishTraining("encnet", model, rank, ranks, c.out, firstLoss, lastLoss);
}

} // namespace

int main(int argc, char **argv) {
  Config c;
  CLI::App app{"Trains a small EncNet (examples/encnet/encnet.enc) to label every pixel of collages of scikit-image's "
               "sample images with the image it comes from, and reports the per-pixel accuracy on collages cut from a "
               "part of each image that training does not see.",
               "encnet"};
  int epochs = c.epochs;
  std::string device = "cpu";
  bool small = false;
  app.add_option("--epochs", epochs, "training epochs (default 20; 4 with --small)")->check(CLI::Range(1, 100000));
  app.add_option("--batch", c.batch, "collages per step, over all ranks")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--device", device, "where to train")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--out", c.out, "save the trained parameters and buffers (safetensors)");
  app.add_flag("--small", small, "a quick run: fewer steps and held-out collages, 16x16 collages");
  app.add_option("--data", c.data, "the images (python3-skimage's)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    app.exit(e);
    return 2;
  }
  if (small) c.steps = 10, c.size = 16, c.heldOut = 16, c.epochs = 4;
  if (app.count("--epochs")) c.epochs = epochs;
  c.options.device = *parseDevice(device);
  c.options.seed = 7;
  c.options.dataParallel = true; // under encc launch: backward averages the parameter gradients over the ranks
  try {
    return run(c);
  } catch (const Error &e) {
    std::cerr << "encnet: " << e.render() << "\n";
    return 1;
  }
}
