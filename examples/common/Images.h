// RGB images from disk (stb_image: PNG, JPEG, ...), the crops the texture example trains and
// tests on, the style example's resizing, and PNG output (stb_image_write).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace images {

struct Image {
  static constexpr int kChannels = 3;
  std::string name;
  int width = 0, height = 0;
  std::vector<float> pixels; // [channel][row][column], in [0, 1]
};

// Reads `dir/file` as RGB (stb_image repeats a gray image's one channel). A missing directory
// or file, or one stb_image cannot decode, is an enc::Error naming the path and, for the first
// two, `packageHint`.
Image loadRgb(const std::string &dir, const std::string &file, const std::string &packageHint);

// One crop of `size` x `size` at (x, y), transformed by one of the 8 symmetries of the square
// (`transform` 0..7: bit 0 mirrors, bits 1-2 rotate by 90 degrees that many times), written to
// `out` as [channel][row][column] (3 * size * size floats).
void crop(const Image &image, int x, int y, int size, int transform, float *out);

// The largest centered square of `image`, resized to `size` x `size` by averaging the source
// pixels each output pixel covers (area resampling; for shrinking).
Image squareThumbnail(const Image &image, int size);

// Writes [channel][row][column] RGB values (clamped to [0, 1]) as an 8-bit PNG; an enc::Error
// if it cannot be written.
void writePng(const std::string &path, int width, int height, const float *pixels);

} // namespace images
