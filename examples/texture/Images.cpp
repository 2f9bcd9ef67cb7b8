#include "Images.h"

#include "support/Error.h"

#include <stb_image.h>

#include <fmt/format.h>

#include <filesystem>

namespace texture {

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

} // namespace texture
