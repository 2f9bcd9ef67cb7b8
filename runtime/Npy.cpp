#include "runtime/Npy.h"

#include "runtime/FileIO.h"
#include "support/Error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace enc {

// The on-disk data is copied byte for byte, so '<' (and '=') must mean the host's own order.
static_assert(std::endian::native == std::endian::little, "Npy.cpp assumes a little-endian host");

namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr size_t kAlign = 64;       // the spec asks writers to pad the header to a multiple of this
constexpr size_t kMaxPreamble = 12; // magic, version and a 4-byte header length (versions 2.0 and 3.0)
constexpr int kMaxNesting = 32;     // bounds the parser's recursion on hostile headers
// Input without a size up front (a pipe) is read no further than its header says; the header itself is
// bounded here (np.save writes a few hundred bytes, tens of kilobytes for thousands of dimensions).
constexpr size_t kMaxStreamHeader = size_t{1} << 20;
constexpr uint64_t kUnknownSize = std::numeric_limits<uint64_t>::max();

constexpr const char *kHeaderHint =
    "a .npy header looks like {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }; "
    "write the file with np.save";
constexpr const char *kDTypeHint =
    "encc reads float16, float32 and float64 arrays; convert with arr.astype(np.float32)";

[[noreturn]] void failIn(const std::string &name, const std::string &message, std::string hint = {}) {
  throw Error(name + ": " + message, std::move(hint));
}

std::string plural(uint64_t n, const char *word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}


// --- Preamble: magic, version and header length ---

struct Preamble {
  size_t headerOffset;
  size_t headerLen;
};

// `head` holds the file's first min(fileSize, kMaxPreamble) bytes.
Preamble parsePreamble(std::string_view head, uint64_t fileSize, const std::string &name) {
  if (fileSize == 0) failIn(name, "not a .npy file (the file is empty)");
  size_t magicSeen = std::min(head.size(), kMagic.size());
  if (head.substr(0, magicSeen) != kMagic.substr(0, magicSeen)) {
    std::string hint;
    if (head.starts_with("PK\x03\x04"))
      hint = "this looks like a .npz archive (np.savez); save each array with np.save";
    failIn(name, "not a .npy file (bad magic bytes)", hint);
  }
  auto truncatedPreamble = [&] {
    failIn(name, fmt::format("truncated: the file ends inside the .npy preamble after {}",
                             plural(fileSize, "byte")));
  };
  if (head.size() < kMagic.size() + 2) truncatedPreamble();
  int major = static_cast<unsigned char>(head[6]);
  int minor = static_cast<unsigned char>(head[7]);
  if (major < 1 || major > 3 || minor != 0)
    failIn(name, fmt::format("unsupported .npy format version {}.{}", major, minor),
           "encc reads format versions 1.0, 2.0 and 3.0");
  size_t lenBytes = major == 1 ? 2 : 4;
  if (head.size() < 8 + lenBytes) truncatedPreamble();
  size_t headerLen = 0;
  for (size_t i = 0; i < lenBytes; ++i)
    headerLen |= size_t{static_cast<unsigned char>(head[8 + i])} << (8 * i);
  size_t headerOffset = 8 + lenBytes;
  if (headerLen > fileSize - headerOffset)
    failIn(name, fmt::format("truncated: the header length field says {} but only {} follow",
                             plural(headerLen, "byte"), plural(fileSize - headerOffset, "byte")));
  return {headerOffset, headerLen};
}

// --- Header: a Python dict literal, parsed as the small subset of Python that np.save writes ---

struct Value {
  enum class Kind { Str, Int, Bool, Tuple, List };
  Value(Kind k, std::string_view source) : kind(k), text(source) {}

  Kind kind;
  std::string_view text;    // source text, for messages
  std::string_view str;     // Str: the characters between the quotes
  int64_t num = 0;          // Int
  bool flag = false;        // Bool
  std::vector<Value> items; // Tuple, List
};

class HeaderParser {
public:
  HeaderParser(std::string_view text, const std::string &name) : s_(text), name_(name) {}

  std::vector<std::pair<std::string_view, Value>> parseDict() {
    std::vector<std::pair<std::string_view, Value>> entries;
    skipSpace();
    if (!eat('{')) error("expected a dict starting with '{'");
    for (;;) {
      skipSpace();
      if (eat('}')) break;
      Value key = parseValue(0);
      if (key.kind != Value::Kind::Str)
        error(fmt::format("dict key {} is not a string", printableText(key.text)));
      skipSpace();
      if (!eat(':')) error(fmt::format("expected ':' after key '{}'", printableText(key.str)));
      entries.emplace_back(key.str, parseValue(0));
      skipSpace();
      if (eat('}')) break;
      if (!eat(',')) error("expected ',' or '}' after a dict entry");
    }
    skipSpace();
    if (pos_ != s_.size()) error("unexpected text after the closing '}'");
    return entries;
  }

private:
  [[noreturn]] void error(const std::string &what) const {
    std::string_view shown = s_; // without the padding np.save adds
    while (!shown.empty() && (shown.back() == ' ' || shown.back() == '\n')) shown.remove_suffix(1);
    failIn(name_,
           fmt::format("malformed header: {} at column {} of \"{}\"", what, pos_ + 1, printableText(shown)),
           kHeaderHint);
  }

  // np.save ends the header with spaces and '\n'; other writers use other whitespace.
  void skipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n'))
      ++pos_;
  }

  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  static bool isWordChar(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == '-' || c == '+' || c == '.';
  }

  Value parseValue(int depth) {
    skipSpace();
    if (pos_ == s_.size()) error("unexpected end of header");
    size_t start = pos_;
    char c = s_[pos_];
    if (c == '\'' || c == '"') {
      size_t close = s_.find(c, pos_ + 1);
      if (close == std::string_view::npos) error("unterminated string");
      pos_ = close + 1;
      Value v{Value::Kind::Str, s_.substr(start, pos_ - start)};
      v.str = s_.substr(start + 1, close - start - 1);
      return v;
    }
    if (c == '(' || c == '[') {
      if (depth >= kMaxNesting) error("values nested too deeply");
      return parseSequence(depth + 1);
    }
    if (!isWordChar(c)) error(fmt::format("unexpected character '{}'", printableText(s_.substr(pos_, 1))));
    while (pos_ < s_.size() && isWordChar(s_[pos_])) ++pos_;
    std::string_view word = s_.substr(start, pos_ - start);
    if (word == "True" || word == "False") {
      Value v{Value::Kind::Bool, word};
      v.flag = word == "True";
      return v;
    }
    return parseInt(word, start);
  }

  // Python integers; the 'L' suffix of Python 2 longs still appears in old version 1.0 files.
  Value parseInt(std::string_view word, size_t start) {
    std::string_view digits = word;
    if (digits.ends_with('L')) digits.remove_suffix(1);
    bool negative = digits.starts_with('-');
    if (negative) digits.remove_prefix(1);
    if (digits.empty() ||
        !std::all_of(digits.begin(), digits.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      pos_ = start;
      error(fmt::format("unexpected '{}'", printableText(word)));
    }
    uint64_t magnitude = 0;
    for (char d : digits) {
      if (magnitude > (std::numeric_limits<uint64_t>::max() - 9) / 10) {
        pos_ = start;
        error(fmt::format("integer {} is too large", printableText(word)));
      }
      magnitude = magnitude * 10 + static_cast<uint64_t>(d - '0');
    }
    constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (magnitude > kMax) {
      pos_ = start;
      error(fmt::format("integer {} is too large", printableText(word)));
    }
    Value v{Value::Kind::Int, word};
    v.num = negative ? -static_cast<int64_t>(magnitude) : static_cast<int64_t>(magnitude);
    return v;
  }

  // A tuple or list, trailing comma allowed. As in Python, "(x)" without a comma is just x in parentheses.
  Value parseSequence(int depth) {
    size_t start = pos_;
    char open = s_[pos_++];
    char close = open == '(' ? ')' : ']';
    Value v{open == '(' ? Value::Kind::Tuple : Value::Kind::List, {}};
    bool sawComma = false;
    for (;;) {
      skipSpace();
      if (eat(close)) break;
      v.items.push_back(parseValue(depth));
      skipSpace();
      if (eat(close)) break;
      if (!eat(',')) error(fmt::format("expected ',' or '{}'", close));
      sawComma = true;
    }
    std::string_view text = s_.substr(start, pos_ - start);
    if (open == '(' && v.items.size() == 1 && !sawComma) {
      Value inner = std::move(v.items[0]);
      inner.text = text;
      return inner;
    }
    v.text = text;
    return v;
  }

  std::string_view s_;
  const std::string &name_;
  size_t pos_ = 0;
};

struct Layout {
  DType dtype;
  Shape shape;
  size_t nbytes;
};

DType parseDescr(const Value &v, const std::string &name) {
  if (v.kind == Value::Kind::List)
    failIn(name, fmt::format("structured dtype {} is not supported", printableText(v.text)), kDTypeHint);
  if (v.kind != Value::Kind::Str)
    failIn(
        name,
        fmt::format("malformed header: 'descr' must be a dtype string like '<f4', got {}", printableText(v.text)),
        kHeaderHint);
  std::string_view descr = v.str;
  char order = '=';
  if (!descr.empty() && std::string_view("<>=|").find(descr[0]) != std::string_view::npos) {
    order = descr[0];
    descr.remove_prefix(1);
  }
  std::optional<DType> dtype;
  if (descr == "f2") dtype = DType::F16;
  if (descr == "f4") dtype = DType::F32;
  if (descr == "f8") dtype = DType::F64;
  std::string shown = printableText(v.str);
  if (!dtype) failIn(name, fmt::format("dtype '{}' is not supported", shown), kDTypeHint);
  if (order == '>')
    failIn(name, fmt::format("dtype '{}' is big-endian, which is not supported", shown),
           fmt::format("encc reads little-endian data; convert with arr.astype('<{}')", descr));
  // '|' means "byte order does not apply", which is only true of one-byte types.
  if (order == '|')
    failIn(name,
           fmt::format("dtype '{}' has byte order '|' (not applicable), which is invalid for a {}-byte float",
                       shown, dtypeSize(*dtype)),
           fmt::format("write the file with np.save, which uses '<{}'", descr));
  return *dtype;
}

Shape parseShape(const Value &v, const std::string &name) {
  bool ok = v.kind == Value::Kind::Tuple && std::all_of(v.items.begin(), v.items.end(), [](const Value &d) {
              return d.kind == Value::Kind::Int;
            });
  if (!ok)
    failIn(name,
           fmt::format("malformed header: 'shape' must be a tuple of integers like (5,) or (2, 3), got {}",
                       printableText(v.text)),
           kHeaderHint);
  Shape shape;
  for (const Value &d : v.items) {
    if (d.num < 0)
      failIn(name, fmt::format("malformed header: shape {} has a negative dimension", printableText(v.text)));
    shape.push_back(d.num);
  }
  return shape;
}

// Rejects shapes whose byte size overflows, counting the nonzero dimensions (as shapeNumel
// does: a zero among them does not make a shape that is too large fit, in any order).
size_t checkedBytes(const Shape &shape, DType dtype, std::string_view shapeText, const std::string &name) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto tooLarge = [&] {
    failIn(name, fmt::format("malformed header: shape {} is too large (its byte size overflows)",
                             printableText(shapeText)));
  };
  int64_t nonzero = 1;
  bool empty = false;
  for (int64_t d : shape) {
    empty = empty || d == 0;
    if (d != 0 && nonzero > kMax / d) tooLarge();
    if (d != 0) nonzero *= d;
  }
  auto elemSize = static_cast<int64_t>(dtypeSize(dtype));
  if (nonzero > kMax / elemSize) tooLarge();
  return empty ? 0 : static_cast<size_t>(nonzero * elemSize);
}

Layout parseHeader(std::string_view text, const std::string &name) {
  const Value *descr = nullptr, *fortran = nullptr, *shape = nullptr;
  auto entries = HeaderParser(text, name).parseDict();
  for (const auto &[key, value] : entries) {
    const Value **slot = key == "descr"           ? &descr
                         : key == "fortran_order" ? &fortran
                         : key == "shape"         ? &shape
                                                  : nullptr;
    if (!slot)
      failIn(name, fmt::format("malformed header: unexpected key '{}'", printableText(key)), kHeaderHint);
    if (*slot) failIn(name, fmt::format("malformed header: duplicate key '{}'", printableText(key)), kHeaderHint);
    *slot = &value;
  }
  auto require = [&](const Value *value, const char *key) {
    if (!value) failIn(name, fmt::format("malformed header: missing key '{}'", key), kHeaderHint);
  };
  require(descr, "descr");
  require(fortran, "fortran_order");
  require(shape, "shape");

  Layout layout{parseDescr(*descr, name), parseShape(*shape, name), 0};
  if (fortran->kind != Value::Kind::Bool)
    failIn(name,
           fmt::format("malformed header: 'fortran_order' must be True or False, got {}",
                       printableText(fortran->text)),
           kHeaderHint);
  // Column-major and row-major bytes coincide when at most one dimension exceeds 1 (e.g. vectors written by
  // Julia, which marks every array fortran_order True) or there are no elements; anything else would need
  // a transpose.
  bool noElements = std::find(layout.shape.begin(), layout.shape.end(), 0) != layout.shape.end();
  if (fortran->flag && !noElements &&
      std::count_if(layout.shape.begin(), layout.shape.end(), [](int64_t d) { return d > 1; }) > 1)
    failIn(
        name,
        fmt::format("the array of shape {} is stored in Fortran (column-major) order, which is not supported",
                    printableText(shape->text)),
        "save a C-order copy: np.save(path, np.ascontiguousarray(arr))");
  layout.nbytes = checkedBytes(layout.shape, layout.dtype, shape->text, name);
  return layout;
}

void checkDataSize(const Layout &layout, uint64_t available, const std::string &name) {
  uint64_t numel = layout.nbytes / dtypeSize(layout.dtype);
  if (available < layout.nbytes)
    failIn(name,
           fmt::format("truncated: header says {} of {} ({}) but only {} follow", plural(numel, "element"),
                       dtypeName(layout.dtype), plural(layout.nbytes, "byte"), plural(available, "byte")),
           "the file was probably cut off while being written or copied");
  if (available > layout.nbytes)
    failIn(name,
           fmt::format("has {} after the data (header says {} of {}, {})",
                       plural(available - layout.nbytes, "extra byte"), plural(numel, "element"),
                       dtypeName(layout.dtype), plural(layout.nbytes, "byte")),
           "encc reads one array per .npy file; were several arrays appended to it?");
}

// --- File helpers ---

// Reads until `dst` holds `n` bytes or the input ends; returns how many it got.
size_t readUpTo(int fd, char *dst, size_t n, const std::string &path) {
  size_t total = 0;
  while (total < n) {
    ssize_t got = ::read(fd, dst + total, n - total);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("cannot read {}: {}", path, errnoText());
    if (got == 0) break;
    total += static_cast<size_t>(got);
  }
  return total;
}

// The tensor a header describes; a size the host cannot hold is an error naming the file.
Tensor allocate(Layout &layout, const std::string &name) {
  try {
    return Tensor(layout.dtype, std::move(layout.shape));
  } catch (const Error &e) {
    failIn(name, e.what(), e.hint());
  } catch (const std::bad_alloc &) {
    failIn(name, fmt::format("cannot allocate {} for the array", plural(layout.nbytes, "byte")));
  }
}

// Input with no size up front (a pipe, a character device): the preamble, the header, then exactly the
// data the header declares, and one byte more to learn that nothing follows. Endless input (/dev/zero)
// fails at the magic bytes; nothing is read that the header does not account for.
Tensor readNpyStream(int fd, const std::string &path) {
  std::string bytes(kMaxPreamble, '\0');
  bytes.resize(readUpTo(fd, bytes.data(), bytes.size(), path));
  Preamble pre = parsePreamble(bytes, bytes.size() < kMaxPreamble ? bytes.size() : kUnknownSize, path);
  if (pre.headerLen > kMaxStreamHeader)
    failIn(path, fmt::format("the header length field says {}, more than encc reads from a pipe ({})",
                             plural(pre.headerLen, "byte"), plural(kMaxStreamHeader, "byte")),
           "write the array to a regular file with np.save");
  size_t headerEnd = pre.headerOffset + pre.headerLen;
  if (bytes.size() < headerEnd) {
    size_t have = bytes.size();
    bytes.resize(headerEnd);
    size_t got = have + readUpTo(fd, bytes.data() + have, headerEnd - have, path);
    if (got < headerEnd)
      failIn(path, fmt::format("truncated: the header length field says {} but only {} follow",
                               plural(pre.headerLen, "byte"), plural(got - pre.headerOffset, "byte")));
  }
  Layout layout = parseHeader(std::string_view(bytes).substr(pre.headerOffset, pre.headerLen), path);
  // A header shorter than the preamble read leaves data bytes in `bytes`.
  std::string_view early = std::string_view(bytes).substr(headerEnd);
  if (early.size() > layout.nbytes) checkDataSize(layout, early.size(), path);
  size_t nbytes = layout.nbytes;
  Tensor t = allocate(layout, path);
  auto *data = static_cast<char *>(t.data());
  if (!early.empty()) std::memcpy(data, early.data(), early.size());
  size_t got = early.size() + readUpTo(fd, data + early.size(), nbytes - early.size(), path);
  if (got < nbytes) checkDataSize(layout, got, path);
  char extra;
  if (readUpTo(fd, &extra, 1, path) != 0)
    failIn(path,
           fmt::format("has more bytes after the data (header says {} of {}, {})",
                       plural(nbytes / dtypeSize(t.dtype()), "element"), dtypeName(t.dtype()), plural(nbytes, "byte")),
           "encc reads one array per .npy file; were several arrays appended to it?");
  return t;
}

const char *descr(DType t) {
  switch (t) {
  case DType::F16: return "f2";
  case DType::F32: return "f4";
  case DType::F64: return "f8";
  case DType::BF16: break; // widened by hostTensorToWrite
  }
  fail("no .npy dtype for {} data", dtypeName(t));
}

// The tensor on the host in a dtype NumPy has: bf16 is widened (exactly) to f32.
Tensor hostTensorToWrite(const Tensor &t) {
  Tensor host = t.cpu();
  return host.dtype() == DType::BF16 ? host.to(DType::F32) : host;
}

// Magic, version, header length and the padded header dict: everything before the data.
std::string npyPreambleAndHeader(const Tensor &t) {
  std::string shape = "(";
  for (int i = 0; i < t.rank(); ++i) shape += fmt::format("{}, ", t.dim(i));
  if (t.rank() == 1)
    shape.pop_back(); // "(5,)": a 1-tuple keeps its comma
  else if (t.rank() > 1)
    shape.resize(shape.size() - 2);
  shape += ")";
  std::string dict =
      fmt::format("{{'descr': '<{}', 'fortran_order': False, 'shape': {}, }}", descr(t.dtype()), shape);
  // Version 1.0 stores the header length in 2 bytes; 2.0 (same header format otherwise) in 4.
  auto paddedLen = [&](size_t preamble) {
    return (preamble + dict.size() + 1 + kAlign - 1) / kAlign * kAlign - preamble; // +1 for the final '\n'
  };
  int major = paddedLen(10) <= std::numeric_limits<uint16_t>::max() ? 1 : 2;
  size_t lenBytes = major == 1 ? 2 : 4;
  size_t headerLen = paddedLen(8 + lenBytes);
  std::string out(kMagic);
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < lenBytes; ++i) out += static_cast<char>((headerLen >> (8 * i)) & 0xff);
  out += dict;
  out.append(headerLen - dict.size() - 1, ' ');
  out += '\n';
  return out;
}

} // namespace

Tensor parseNpy(std::string_view bytes, const std::string &name) {
  Preamble pre = parsePreamble(bytes.substr(0, kMaxPreamble), bytes.size(), name);
  Layout layout = parseHeader(bytes.substr(pre.headerOffset, pre.headerLen), name);
  std::string_view data = bytes.substr(pre.headerOffset + pre.headerLen);
  checkDataSize(layout, data.size(), name);
  size_t nbytes = layout.nbytes;
  Tensor t = allocate(layout, name);
  if (nbytes) std::memcpy(t.data(), data.data(), nbytes); // an empty tensor may have no storage to copy into
  return t;
}

Tensor readNpy(const std::string &path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail("cannot read {}: {}", path, errnoText());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail("cannot read {}: {}", path, errnoText());
  // Pipes and the like have no size up front; directories fail in read() with a clear errno.
  if (!S_ISREG(st.st_mode)) return readNpyStream(fd.get(), path);

  // Read the header first and check the size before allocating, so that a corrupt header cannot make us
  // allocate (or read) more than the file holds; the data then goes straight into the tensor.
  auto fileSize = static_cast<uint64_t>(st.st_size);
  std::string head(std::min<uint64_t>(fileSize, kMaxPreamble), '\0');
  preadFully(fd.get(), head.data(), head.size(), 0, path);
  Preamble pre = parsePreamble(head, fileSize, path);
  std::string header(pre.headerLen, '\0');
  preadFully(fd.get(), header.data(), header.size(), pre.headerOffset, path);
  Layout layout = parseHeader(header, path);
  uint64_t dataOffset = pre.headerOffset + pre.headerLen;
  checkDataSize(layout, fileSize - dataOffset, path);
  size_t nbytes = layout.nbytes;
  Tensor t = allocate(layout, path);
  preadFully(fd.get(), t.data(), nbytes, dataOffset, path);
  return t;
}

std::string serializeNpy(const Tensor &tensor) {
  if (!tensor.defined()) fail("cannot write an undefined tensor as .npy");
  Tensor t = hostTensorToWrite(tensor);
  std::string out = npyPreambleAndHeader(t);
  out.append(static_cast<const char *>(t.data()), t.nbytes());
  return out;
}

void writeNpy(const std::string &path, const Tensor &tensor) {
  if (!tensor.defined()) fail("cannot write {}: the tensor is undefined", path);
  Tensor t = hostTensorToWrite(tensor);
  std::string header = npyPreambleAndHeader(t);
  writeFileAtomically(path, {header, std::string_view(static_cast<const char *>(t.data()), t.nbytes())});
}

} // namespace enc
