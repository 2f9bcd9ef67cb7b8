#include "Images.h"

#include "support/Error.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace images {

Image loadRgb(const std::string &dir, const std::string &file, const std::string &packageHint) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir))
    throw enc::Error(fmt::format("image directory {} not found: {}", dir, packageHint));
  std::string path = (fs::path(dir) / file).string();
  if (!fs::exists(path)) throw enc::Error(fmt::format("image {} not found: {}", path, packageHint));
  int w = 0, h = 0, channels = 0;
  const int C = Image::kChannels;
  unsigned char *data = stbi_load(path.c_str(), &w, &h, &channels, C); // interleaved RGB
  if (!data) throw enc::Error(fmt::format("cannot read image {}: {}", path, stbi_failure_reason()));
  const size_t plane = static_cast<size_t>(w) * h;
  Image image{fs::path(file).stem().string(), w, h, std::vector<float>(C * plane)};
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < C; ++c) image.pixels[c * plane + i] = data[i * C + c] / 255.0f;
  stbi_image_free(data);
  return image;
}

void crop(const Image &image, int x, int y, int size, int transform, float *out) {
  const size_t plane = static_cast<size_t>(image.width) * image.height;
  for (int r = 0; r < size; ++r)
    for (int c = 0; c < size; ++c) {
      int u = transform & 1 ? size - 1 - c : c, v = r; // mirror
      for (int k = 0; k < (transform >> 1 & 3); ++k) { // rotate by 90 degrees
        int t = u;
        u = size - 1 - v;
        v = t;
      }
      for (int ch = 0; ch < Image::kChannels; ++ch)
        out[(ch * size + r) * size + c] = image.pixels[ch * plane + static_cast<size_t>(y + v) * image.width + (x + u)];
    }
}

Image squareThumbnail(const Image &image, int size) {
  const int side = std::min(image.width, image.height), x0 = (image.width - side) / 2, y0 = (image.height - side) / 2;
  const size_t plane = static_cast<size_t>(image.width) * image.height;
  Image out{image.name, size, size, std::vector<float>(static_cast<size_t>(Image::kChannels) * size * size)};
  const double scale = static_cast<double>(side) / size;
  for (int r = 0; r < size; ++r)
    for (int c = 0; c < size; ++c) {
      // Source rows [ra, rb) and columns [ca, cb) of this output pixel (at least one each).
      int ra = static_cast<int>(r * scale), rb = std::max(ra + 1, static_cast<int>(std::ceil((r + 1) * scale)));
      int ca = static_cast<int>(c * scale), cb = std::max(ca + 1, static_cast<int>(std::ceil((c + 1) * scale)));
      rb = std::min(rb, side), cb = std::min(cb, side);
      for (int ch = 0; ch < Image::kChannels; ++ch) {
        double s = 0;
        for (int v = ra; v < rb; ++v)
          for (int u = ca; u < cb; ++u) s += image.pixels[ch * plane + static_cast<size_t>(y0 + v) * image.width + x0 + u];
        out.pixels[(static_cast<size_t>(ch) * size + r) * size + c] = static_cast<float>(s / ((rb - ra) * (cb - ca)));
      }
    }
  return out;
}

void writePng(const std::string &path, int width, int height, const float *pixels) {
  const int C = Image::kChannels;
  const size_t plane = static_cast<size_t>(width) * height;
  std::vector<unsigned char> rgb(C * plane);
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < C; ++c)
      rgb[i * C + c] = static_cast<unsigned char>(std::lround(255 * std::clamp(pixels[c * plane + i], 0.0f, 1.0f)));
  if (!stbi_write_png(path.c_str(), width, height, C, rgb.data(), width * C))
    throw enc::Error(fmt::format("cannot write {}", path));
}

} // namespace images
