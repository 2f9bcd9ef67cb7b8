// Writes the binary seed corpora of the fuzz targets (none is committed): valid .npy files,
// cache entries and store conversations, plus a few near misses. scripts/fuzz.sh runs it.
//   enc_fuzz_seeds OUTDIR   -> OUTDIR/npy, OUTDIR/diskcache, OUTDIR/tcpstore
#include "runtime/DiskCache.h"
#include "runtime/Npy.h"
#include "runtime/Tensor.h"

#include <arpa/inet.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace enc;

namespace {

void write(const fs::path &dir, const std::string &name, const std::string &bytes) {
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

Tensor ramp(DType dtype, Shape shape) {
  Tensor t(dtype, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, 0.25 * static_cast<double>(i) - 1);
  return t;
}

// A .npy of format `major`.0 with `header` (padded as NumPy pads it) and `data`.
std::string npy(int major, std::string header, const std::string &data) {
  const size_t lengthBytes = major == 1 ? 2 : 4, prefix = 8 + lengthBytes;
  header += ' ';
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < lengthBytes; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string u32(uint32_t v) {
  v = htonl(v);
  return std::string(reinterpret_cast<const char *>(&v), 4);
}

// One store message: [op][u32 key length][key][u32 value length][value].
std::string message(char op, const std::string &key, const std::string &value) {
  return std::string(1, op) + u32(static_cast<uint32_t>(key.size())) + key + u32(static_cast<uint32_t>(value.size())) +
         value;
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];

  // .npy: what writeNpy writes, every dtype and a few shapes, and other versions and orders.
  int n = 0;
  for (DType dtype : {DType::F16, DType::F32, DType::F64})
    for (const Shape &shape : std::vector<Shape>{{}, {0}, {3}, {2, 3}, {1, 2, 1, 2}})
      write(out / "npy", "written-" + std::to_string(n++) + ".npy", serializeNpy(ramp(dtype, shape)));
  const std::string six(24, '\0');
  write(out / "npy", "v2.npy", npy(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", six));
  write(out / "npy", "v3.npy", npy(3, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", six));
  write(out / "npy", "fortran.npy", npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 6), }", six));
  write(out / "npy", "int.npy", npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (6,), }", six));
  write(out / "npy", "big-endian.npy", npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", six));

  // Cache entries as put() writes them under the fuzzer's key (fuzz/DiskCacheFuzzer.cpp).
  std::string tmp = (fs::temp_directory_path() / "encc-fuzz-seeds-XXXXXX").string();
  if (!::mkdtemp(tmp.data())) return 1;
  {
    DiskCache cache(fs::path(tmp) / "cache", 1 << 20);
    n = 0;
    for (const std::string &payload : {std::string(), std::string("x"), std::string(300, '\x7f'),
                                       std::string("\x7f" "ELF\2\1\1", 7)}) {
      cache.put("fuzz-key", payload);
      std::ifstream in(cache.entryPath("fuzz-key"), std::ios::binary);
      std::stringstream bytes;
      bytes << in.rdbuf();
      write(out / "diskcache", "entry-" + std::to_string(n++), bytes.str());
    }
  }
  fs::remove_all(tmp);

  // Store conversations (fuzz/TcpStoreFuzzer.cpp): WORLD_SIZE byte, connections separated.
  const std::string sep = "#next-connection#", token = "fuzz-token";
  const std::string join0 = message('H', "0", "2:" + token), join1 = message('H', "1", "2:" + token);
  write(out / "tcpstore", "rank0", std::string(1, '\1') + join0 + message('S', "key", "value") +
                                       message('G', "key", "") + message('G', "other", "") + message('D', "", "") +
                                       message('B', "", ""));
  write(out / "tcpstore", "two-ranks", std::string(1, '\1') + join0 + message('S', "a", "1") + sep + join1 +
                                           message('G', "a", "") + message('D', "", ""));
  write(out / "tcpstore", "died", std::string(1, '\1') + join0 + message('S', "a", "1") + sep + join0 +
                                      message('D', "", "") + message('G', "b", ""));
  write(out / "tcpstore", "bad-token", std::string(1, '\1') + message('H', "0", "2:wrong") + sep +
                                           message('H', "0", "3:" + token) + sep + message('S', "a", "1"));
  write(out / "tcpstore", "truncated", std::string(1, '\1') + join0 + message('S', "k", "v").substr(0, 7));
  return 0;
}
