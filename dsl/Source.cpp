#include "dsl/Source.h"

#include <algorithm>

namespace enc {

SourceFile::SourceFile(std::string name, std::string text) : name_(std::move(name)), text_(std::move(text)) {
  lineStarts_.push_back(0);
  for (uint32_t i = 0; i < text_.size(); ++i)
    if (text_[i] == '\n') lineStarts_.push_back(i + 1);
}

std::pair<int, int> SourceFile::lineCol(uint32_t offset) const {
  auto it = std::upper_bound(lineStarts_.begin(), lineStarts_.end(), offset);
  int line = static_cast<int>(it - lineStarts_.begin());
  return {line, static_cast<int>(offset - lineStarts_[line - 1]) + 1};
}

std::string_view SourceFile::lineText(int line) const {
  if (line < 1 || line > static_cast<int>(lineStarts_.size())) return {};
  uint32_t begin = lineStarts_[line - 1];
  uint32_t end = line < static_cast<int>(lineStarts_.size()) ? lineStarts_[line] - 1 : text_.size();
  std::string_view s(text_.data() + begin, end - begin);
  if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
  return s;
}

std::string SourceLoc::where() const {
  return (file ? file->name() : std::string("?")) + ":" + std::to_string(line()) + ":" + std::to_string(col());
}

SourceLoc SourceLoc::join(SourceLoc a, SourceLoc b) {
  if (!a.valid()) return b;
  if (!b.valid()) return a;
  uint32_t begin = std::min(a.offset, b.offset);
  uint32_t end = std::max(a.offset + a.length, b.offset + b.length);
  return {a.file, begin, end - begin};
}

} // namespace enc
