#include "runtime/Safetensors.h"

#include "runtime/FileIO.h"
#include "support/Error.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>

namespace enc {

// Tensor bytes are copied as they are, so the file's little-endian order must be the host's.
static_assert(std::endian::native == std::endian::little, "Safetensors.cpp assumes a little-endian host");

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100'000'000; // the reference implementation's bound
constexpr size_t kMaxNesting = 3;            // the header object, an entry, its shape or offsets
// No array or object inside an entry needs more items (torch tensors have at most 64 dimensions);
// the bound keeps a hostile header from building a large JSON tree.
constexpr size_t kMaxItems = 100'000;
constexpr const char *kMetadataKey = "__metadata__";

constexpr const char *kWriteHint =
    "write the file with safetensors.torch.save_file(model.state_dict(), path), or numpy-only with "
    "tests/python/safetensors_np.py";
constexpr const char *kDTypeHint = "encc reads F32, F64, F16 and BF16 tensors; convert in Python with tensor.float()";

struct DTypeInfo {
  std::string_view name;
  size_t size;
  std::optional<DType> dtype; // what encc holds it as, if it can
};

// The dtypes of the format (sub-byte ones aside): those encc cannot hold are still recognized, so a
// skipped entry's size is checked and an unsupported one is named as such, not as unknown.
constexpr DTypeInfo kDTypes[] = {
    {"F32", 4, DType::F32},     {"F64", 8, DType::F64},    {"F16", 2, DType::F16},
    {"BF16", 2, DType::BF16},   {"I64", 8, std::nullopt},  {"I32", 4, std::nullopt},
    {"I16", 2, std::nullopt},   {"I8", 1, std::nullopt},   {"U64", 8, std::nullopt},
    {"U32", 4, std::nullopt},   {"U16", 2, std::nullopt},  {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt},  {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
    {"C64", 8, std::nullopt},
};

const DTypeInfo *findDType(std::string_view name) {
  for (const DTypeInfo &d : kDTypes)
    if (d.name == name) return &d;
  return nullptr;
}

const char *formatName(DType t) {
  switch (t) {
  case DType::F32: return "F32";
  case DType::F64: return "F64";
  case DType::F16: return "F16";
  case DType::BF16: return "BF16";
  }
  return "F32";
}

std::string plural(uint64_t n, const char *word) { return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s"); }


std::string shown(const json &j) { return printableText(j.dump(-1, ' ', false, json::error_handler_t::replace)); }

// One tensor's entry in the header, checked.
struct Entry {
  std::string name;
  const DTypeInfo *dtype = nullptr; // null: an unknown dtype on a skipped entry
  Shape shape;
  uint64_t begin = 0, end = 0;
  bool skip = false;
};

class HeaderReader {
public:
  HeaderReader(const std::string &path, const std::function<bool(const std::string &)> &skip)
      : path_(path), skip_(skip) {}

  [[noreturn]] void fail(const std::string &message, std::string hint = {}) const {
    throw Error(path_ + ": " + message, std::move(hint));
  }
  [[noreturn]] void failTensor(const std::string &name, const std::string &message, std::string hint = {}) const {
    fail(fmt::format("tensor '{}': {}", printableText(name), message), std::move(hint));
  }

  // Parses the header, entry by entry: each entry is checked when its closing brace is read and then
  // dropped from the JSON tree, which so never holds more than one entry.
  void parse(std::string_view text) {
    std::vector<Frame> stack;
    bool sawTop = false;
    auto callback = [&](int, json::parse_event_t event, json &parsed) -> bool {
      using E = json::parse_event_t;
      switch (event) {
      case E::object_start:
      case E::array_start: {
        if (stack.empty()) {
          if (sawTop || event == E::array_start) fail("the header is not a JSON object", kWriteHint);
          sawTop = true;
        } else {
          countItem(stack);
          if (stack.size() == 1 && event == E::array_start)
            failTensor(stack[0].key, "its entry is an array, not an object like {\"dtype\": \"F32\", ...}", kWriteHint);
          if (stack.size() == 2 && stack[0].key == kMetadataKey)
            fail(fmt::format("metadata '{}' is not a string", printableText(stack[1].key)),
                 "__metadata__ maps strings to strings");
          if (stack.size() >= kMaxNesting) failTensor(stack[0].key, "its entry is nested too deeply");
        }
        stack.push_back({event == E::array_start, 0, {}, {}});
        return true;
      }
      case E::key: {
        countItem(stack);
        Frame &f = stack.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second) {
          if (stack.size() == 1) fail(fmt::format("the header names '{}' twice", printableText(f.key)), kWriteHint);
          fail(fmt::format("the entry '{}' has the key '{}' twice", printableText(stack[0].key), printableText(f.key)));
        }
        return true;
      }
      case E::value:
        if (stack.empty()) fail("the header is not a JSON object", kWriteHint);
        countItem(stack);
        if (stack.size() == 1) {
          if (stack[0].key == kMetadataKey) fail(fmt::format("__metadata__ is {}, not an object", shown(parsed)));
          failTensor(stack[0].key, fmt::format("its entry is {}, not an object like {{\"dtype\": \"F32\", ...}}",
                                               shown(parsed)),
                     kWriteHint);
        }
        return true;
      case E::object_end:
      case E::array_end:
        stack.pop_back();
        if (stack.size() != 1) return true;
        if (stack[0].key == kMetadataKey)
          readMetadata(parsed);
        else
          entries_.push_back(readEntry(stack[0].key, parsed));
        return false; // dropped from the tree
      }
      return true;
    };
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
      fail(fmt::format("the header is empty ({}), not a JSON object", plural(text.size(), "byte")), kWriteHint);
    // The format's header starts with its object's brace: safetensors' own reader refuses a UTF-8 byte
    // order mark or white space before it, which nlohmann's parser would skip (other bytes are JSON's
    // errors below).
    bool bom = text.substr(0, 3) == "\xEF\xBB\xBF";
    if (bom || std::isspace(static_cast<unsigned char>(text[0])))
      fail(fmt::format("the header starts with {}, not '{{'", bom ? "a UTF-8 byte order mark" : "white space"),
           fmt::format("a safetensors header is a JSON object from its first byte, padded with spaces after it; {}",
                       kWriteHint));
    // JSON has no NUL bytes, and nlohmann's parser would take one for the end of its input.
    if (size_t nul = text.find('\0'); nul != std::string_view::npos)
      fail(fmt::format("the header is not valid JSON at byte {} of the header: a NUL byte", nul),
           fmt::format("the header length field says {}; a header is JSON padded with spaces; {}",
                       plural(text.size(), "byte"), kWriteHint));
    try {
      json rest = json::parse(text, callback); // the entries were taken out as they were read
      (void)rest;
    } catch (const json::parse_error &e) {
      // nlohmann's text after "syntax error while parsing X - " (X names the value it was in, which
      // says less than where the parse stopped; the stack says that).
      std::string what = e.what();
      if (size_t at = what.find(" - "); at != std::string::npos) what = what.substr(at + 3);
      else if (size_t colon = what.find(": "); colon != std::string::npos) what = what.substr(colon + 2);
      if (sawTop && stack.empty())
        fail(fmt::format("the header has more after its JSON object, at byte {} of the header: {}", e.byte - 1,
                         printableText(what)),
             fmt::format("the header length field ({}) should end the header at its closing '}}'; {}",
                         plural(text.size(), "byte"), kWriteHint));
      std::string where = position(stack);
      // e.byte counts from 1 and is one past the end when the input ran out.
      if (e.byte > text.size())
        fail(fmt::format("the header is truncated JSON: it ends at byte {} of the header{} ({})", text.size(), where,
                         printableText(what)),
             fmt::format("the header length field says {}: the file is damaged or its header length is wrong; {}",
                         plural(text.size(), "byte"), kWriteHint));
      fail(fmt::format("the header is not valid JSON at byte {} of the header{}: {}", e.byte == 0 ? 0 : e.byte - 1,
                       where, printableText(what)),
           kWriteHint);
    }
  }

  std::vector<Entry> &entries() { return entries_; }
  std::map<std::string, std::string> &metadata() { return metadata_; }

private:
  struct Frame {
    bool isArray;
    size_t items;
    std::string key;           // objects: the last key read
    std::set<std::string> keys; // objects: every key read, to find duplicates
  };

  // Where in the header a parse stopped, for its error: ", inside the entry of tensor 'w', in its "shape"".
  static std::string position(const std::vector<Frame> &stack) {
    if (stack.empty()) return "";
    if (stack.size() == 1)
      return stack[0].key.empty() ? "" : fmt::format(", after the name '{}'", printableText(stack[0].key));
    if (stack[0].key == kMetadataKey) return ", inside __metadata__";
    std::string in = fmt::format(", inside the entry of tensor '{}'", printableText(stack[0].key));
    if (stack.size() > 2) in += fmt::format(", in its \"{}\"", printableText(stack[1].key));
    return in;
  }

  void countItem(std::vector<Frame> &stack) const {
    if (stack.size() > 1 && ++stack.back().items > kMaxItems)
      fail(fmt::format("{} in the header has more than {} items", stack[0].key == kMetadataKey
                                                                      ? std::string("__metadata__")
                                                                      : "tensor '" + printableText(stack[0].key) + "'",
                       kMaxItems));
  }

  void readMetadata(const json &j) {
    for (const auto &[key, value] : j.items()) {
      if (!value.is_string()) fail(fmt::format("metadata '{}' is {}, not a string", printableText(key), shown(value)),
                                   "__metadata__ maps strings to strings");
      metadata_[key] = value.get<std::string>();
    }
  }

  // A non-negative integer of JSON (not 2.0, not 1e3).
  static std::optional<uint64_t> count(const json &j) {
    if (j.is_number_unsigned()) return j.get<uint64_t>();
    if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
    return std::nullopt;
  }

  Entry readEntry(const std::string &name, const json &j) const {
    Entry e;
    e.name = name;
    e.skip = skip_ && skip_(name);
    auto field = [&](const char *key) -> const json & {
      auto it = j.find(key);
      if (it == j.end())
        failTensor(name, fmt::format("its entry has no \"{}\" (it has {})", key, shown(j)), kWriteHint);
      return *it;
    };
    const json &dtype = field("dtype");
    const json &shape = field("shape");
    const json &offsets = field("data_offsets");

    if (!dtype.is_string()) failTensor(name, fmt::format("dtype {} is not a string like \"F32\"", shown(dtype)));
    e.dtype = findDType(dtype.get<std::string>());
    if (!e.skip && !e.dtype)
      failTensor(name, fmt::format("unknown dtype \"{}\"", printableText(dtype.get<std::string>())), kDTypeHint);
    if (!e.skip && !e.dtype->dtype)
      failTensor(name, fmt::format("dtype {} is not supported", e.dtype->name), kDTypeHint);

    if (!shape.is_array()) failTensor(name, fmt::format("shape {} is not a list of sizes like [2, 3]", shown(shape)));
    for (const json &d : shape) {
      std::optional<uint64_t> n = count(d);
      if (!n && d.is_number_integer())
        failTensor(name, fmt::format("shape {} has a negative dimension", shown(shape)));
      if (!n || *n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        failTensor(name, fmt::format("shape {} has a dimension that is not a size ({})", shown(shape), shown(d)));
      e.shape.push_back(static_cast<int64_t>(*n));
    }

    std::optional<uint64_t> begin, end;
    if (offsets.is_array() && offsets.size() == 2) begin = count(offsets[0]), end = count(offsets[1]);
    if (!begin || !end)
      failTensor(name, fmt::format("data_offsets {} is not a pair of byte offsets like [0, 24]", shown(offsets)));
    if (*begin > *end)
      failTensor(name, fmt::format("data_offsets [{}, {}] end before they begin", *begin, *end));
    e.begin = *begin;
    e.end = *end;

    if (e.dtype) {
      uint64_t bytes = 0;
      try {
        auto numel = static_cast<uint64_t>(shapeNumel(e.shape));
        if (numel > std::numeric_limits<uint64_t>::max() / e.dtype->size) throw Error("overflow");
        bytes = numel * e.dtype->size;
      } catch (const Error &) {
        failTensor(name, fmt::format("shape {} is too large (its byte size overflows)", shapeString(e.shape)));
      }
      if (bytes != e.end - e.begin)
        failTensor(name,
                   fmt::format("data_offsets [{}, {}] hold {}, but shape {} of {} needs {}", e.begin, e.end,
                               plural(e.end - e.begin, "byte"), shapeString(e.shape), e.dtype->name,
                               plural(bytes, "byte")),
                   kWriteHint);
    }
    return e;
  }

  const std::string &path_;
  const std::function<bool(const std::string &)> &skip_;
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// The entries must cover the data buffer exactly, each byte once: as the reference implementation
// requires, so that a file it writes is the only kind encc reads.
void checkLayout(std::vector<Entry> &entries, uint64_t dataSize, const HeaderReader &reader) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry &a, const Entry &b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t covered = 0;
  const Entry *previous = nullptr;
  for (const Entry &e : entries) {
    if (e.end > dataSize)
      reader.failTensor(e.name,
                        fmt::format("data_offsets [{}, {}] reach past the end of the data ({})", e.begin, e.end,
                                    plural(dataSize, "byte")),
                        "the file is truncated, or its header does not belong to its data");
    if (e.begin < covered && e.begin != e.end)
      reader.failTensor(e.name, fmt::format("data_offsets [{}, {}] overlap those of '{}' [{}, {}]", e.begin, e.end,
                                            printableText(previous->name), previous->begin, previous->end));
    if (e.begin > covered)
      reader.fail(fmt::format("bytes [{}, {}) of the data belong to no tensor", covered, e.begin), kWriteHint);
    if (e.end > covered) covered = e.end, previous = &e;
  }
  if (covered < dataSize)
    reader.fail(fmt::format("has {} after the last tensor's data", plural(dataSize - covered, "extra byte")),
                "a safetensors file ends with its last tensor; was something appended to it?");
}

// What a file that is not safetensors probably is, from its first bytes.
std::string formatGuess(std::string_view head) {
  bool pickle = head.size() > 1 && head[0] == '\x80' && head[1] >= 2 && head[1] <= 5; // PROTO opcode, version
  if (head.starts_with("PK\x03\x04") || pickle)
    return "this looks like a torch.save file (zip or pickle), which is not safetensors; " + std::string(kWriteHint);
  if (head.starts_with("\x93NUMPY")) return "this looks like a .npy file; " + std::string(kWriteHint);
  return kWriteHint;
}

} // namespace

SafetensorsFile readSafetensorsFile(const std::string &path, const std::function<bool(const std::string &)> &skip) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is then rejected as not a regular file.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) fail("cannot read {}: {}", path, errnoText());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail("cannot read {}: {}", path, errnoText());
  HeaderReader reader(path, skip);
  if (S_ISDIR(st.st_mode)) reader.fail("is a directory, not a safetensors file");
  if (!S_ISREG(st.st_mode))
    reader.fail("is not a regular file (a pipe, socket or device)", "encc reads safetensors from regular files");

  auto fileSize = static_cast<uint64_t>(st.st_size);
  if (fileSize < 8)
    reader.fail(fmt::format("too short for a safetensors file ({}; it starts with an 8-byte header length)",
                            plural(fileSize, "byte")),
                kWriteHint);
  std::string head(8, '\0');
  preadFully(fd.get(), head.data(), head.size(), 0, path);
  uint64_t headerLen = 0;
  for (int i = 0; i < 8; ++i) headerLen |= uint64_t{static_cast<unsigned char>(head[static_cast<size_t>(i)])} << (8 * i);
  if (headerLen > fileSize - 8)
    reader.fail(fmt::format("truncated or not a safetensors file: the header length field says {} but only {} follow",
                            plural(headerLen, "byte"), plural(fileSize - 8, "byte")),
                formatGuess(head));
  if (headerLen > kMaxHeader)
    reader.fail(fmt::format("the header length field says {}, more than the {} safetensors allows",
                            plural(headerLen, "byte"), plural(kMaxHeader, "byte")),
                formatGuess(head));

  std::string header(headerLen, '\0');
  preadFully(fd.get(), header.data(), header.size(), 8, path);
  reader.parse(header);
  std::vector<Entry> &entries = reader.entries();
  uint64_t dataOffset = 8 + headerLen;
  checkLayout(entries, fileSize - dataOffset, reader);

  SafetensorsFile out;
  out.metadata = std::move(reader.metadata());
  for (const Entry &e : entries) {
    if (e.skip) {
      out.skipped.push_back(e.name);
      continue;
    }
    DType dtype = *e.dtype->dtype;
    Tensor t;
    try {
      checkTensorSize(fmt::format("{}: tensor '{}'", path, printableText(e.name)), e.shape, dtype);
      t = Tensor::empty(dtype, e.shape, Device::CPU);
    } catch (const std::bad_alloc &) {
      reader.failTensor(e.name, fmt::format("cannot allocate {}", plural(e.end - e.begin, "byte")));
    }
    if (e.end > e.begin) preadFully(fd.get(), t.data(), e.end - e.begin, dataOffset + e.begin, path);
    out.tensors[e.name] = std::move(t);
  }
  std::sort(out.skipped.begin(), out.skipped.end());
  return out;
}

std::map<std::string, Tensor> readSafetensors(const std::string &path) { return readSafetensorsFile(path).tensors; }

void writeSafetensors(const std::string &path, const std::map<std::string, Tensor> &tensors,
                      const std::map<std::string, std::string> &metadata) {
  json header = json::object();
  std::vector<Tensor> hosts;
  uint64_t offset = 0;
  for (const auto &[name, tensor] : tensors) {
    if (name == kMetadataKey) fail("cannot write {}: '{}' is reserved for the metadata, not a tensor name", path, name);
    if (!tensor.defined()) fail("cannot write {}: tensor '{}' is undefined", path, name);
    Tensor host = tensor.cpu();
    header[name] = {{"dtype", formatName(host.dtype())},
                    {"shape", host.shape()},
                    {"data_offsets", {offset, offset + host.nbytes()}}};
    offset += host.nbytes();
    hosts.push_back(std::move(host));
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const json::type_error &) {
    fail("cannot write {}: a tensor name or metadata string is not valid UTF-8", path);
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string length(8, '\0');
  for (size_t i = 0; i < 8; ++i) length[i] = static_cast<char>((uint64_t{text.size()} >> (8 * i)) & 0xff);
  std::vector<std::string_view> parts = {length, text};
  for (const Tensor &t : hosts) parts.emplace_back(static_cast<const char *>(t.data()), t.nbytes());
  writeFileAtomically(path, parts);
}

} // namespace enc
