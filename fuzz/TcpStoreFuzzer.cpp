// libFuzzer target: bytes as what clients send to rank 0's store (the server's message parser
// and its handling of joins, sets, gets and goodbyes), over socket pairs to a store that
// listens nowhere. Input: one byte for WORLD_SIZE (1 to 4), then the connections' bytes,
// separated by kSeparator, served one after another. Whatever arrives, the store answers
// with well-formed replies only (or closes the connection) and never throws.
#include "FuzzSupport.h"

#include "runtime/TcpStore.h"

#include <arpa/inet.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

// The job's token and the separator between connections (fuzz/SeedGenerator.cpp uses both).
const std::string kToken = "fuzz-token";
const std::string kSeparator = "#next-connection#";

uint32_t get32(std::string_view s, size_t at) {
  uint32_t v;
  std::memcpy(&v, s.data() + at, 4);
  return ntohl(v);
}

// Whether `replies` is a sequence of whole replies: [status 0, 1 or 2][u32 length][key][u32 length][value].
bool wellFormed(std::string_view replies) {
  size_t at = 0;
  while (at < replies.size()) {
    if (static_cast<unsigned char>(replies[at]) > 2 || replies.size() - at < 5) return false;
    at += 1;
    for (int part = 0; part < 2; ++part) {
      if (replies.size() - at < 4) return false;
      const uint32_t n = get32(replies, at);
      at += 4;
      if (replies.size() - at < n) return false;
      at += n;
    }
  }
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const std::string input(reinterpret_cast<const char *>(data), size);
  enc::fuzz::guarded(input, /*printInput=*/false, [&] {
    const int worldSize = 1 + static_cast<unsigned char>(input[0]) % 4;
    std::vector<std::string> connections;
    for (size_t at = 1;;) {
      size_t end = input.find(kSeparator, at);
      connections.push_back(input.substr(at, end == std::string::npos ? std::string::npos : end - at));
      if (end == std::string::npos || connections.size() == 16) break;
      at = end + kSeparator.size();
    }
    const std::string replies = enc::dist::serveConnectionsForTesting(connections, worldSize, kToken);
    if (!wellFormed(replies)) enc::internalError("fuzz: the store sent a malformed reply");
  });
  return 0;
}
