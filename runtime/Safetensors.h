// Reading and writing safetensors files (https://github.com/huggingface/safetensors), the format
// PyTorch users exchange weights in (`safetensors.torch.save_file(model.state_dict(), path)`):
//
//   8 bytes   N, the header's length, unsigned little-endian
//   N bytes   UTF-8 JSON: {"NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, ...,
//                          "__metadata__": {"KEY": "VALUE", ...}}   (metadata optional, strings only)
//   the data  each tensor's bytes in C order, little-endian, at [BEGIN, END) of this buffer
//
// encc holds F32, F64, F16 and BF16 tensors. Files are checked as strictly as the reference
// implementation checks them: the tensors' bytes must tile the data buffer exactly, with no gap, no
// overlap and nothing after the last tensor (extra bytes mean a damaged or concatenated file). Every
// problem is an enc::Error whose message starts with the file's name and names the tensor.
#pragma once

#include "runtime/Tensor.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace enc {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;       // on the host
  std::map<std::string, std::string> metadata; // the "__metadata__" entry
  std::vector<std::string> skipped;            // entries `skip` chose, in name order
};

// Reads every tensor of a safetensors file; a dtype encc does not hold (I64, U8, ...) is an error
// naming the tensor.
std::map<std::string, Tensor> readSafetensors(const std::string &path);

// Reads the tensors and the metadata. Entries for which `skip(name)` is true are checked like the
// others (their place in the buffer, and their size where the dtype is known) but not read, whatever
// their dtype: torch's int64 `num_batches_tracked` counters, which encc has no use for.
SafetensorsFile readSafetensorsFile(const std::string &path,
                                    const std::function<bool(const std::string &)> &skip = {});

// Writes the tensors (CUDA tensors are copied to the host) in name order, with `metadata` as
// "__metadata__" when it is not empty. The header is padded with spaces to a multiple of 8 bytes, as
// the reference writer does, so the data is aligned. The file is replaced atomically (a temporary
// file renamed over `path`).
void writeSafetensors(const std::string &path, const std::map<std::string, Tensor> &tensors,
                      const std::map<std::string, std::string> &metadata = {});

} // namespace enc
