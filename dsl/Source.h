// Source text of one .enc file and positions inside it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace enc {

class SourceFile {
public:
  SourceFile(std::string name, std::string text);

  const std::string &name() const { return name_; }
  const std::string &text() const { return text_; }
  // 1-based line and column of a byte offset.
  std::pair<int, int> lineCol(uint32_t offset) const;
  // The text of a 1-based line, without its newline.
  std::string_view lineText(int line) const;

private:
  std::string name_;
  std::string text_;
  std::vector<uint32_t> lineStarts_;
};

// A span of source text: [offset, offset + length).
struct SourceLoc {
  const SourceFile *file = nullptr;
  uint32_t offset = 0;
  uint32_t length = 0;

  bool valid() const { return file != nullptr; }
  int line() const { return file ? file->lineCol(offset).first : 0; }
  int col() const { return file ? file->lineCol(offset).second : 0; }
  // The smallest span covering both.
  static SourceLoc join(SourceLoc a, SourceLoc b);
  // "file:line:col", as a diagnostic starts ("?:0:0" without a file): for errors raised outside
  // the DiagnosticEngine that point at the source.
  std::string where() const;
};

} // namespace enc
