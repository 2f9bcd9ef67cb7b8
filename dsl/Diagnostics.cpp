#include "dsl/Diagnostics.h"

#include <algorithm>

namespace enc {

Diagnostic &DiagnosticEngine::error(SourceLoc loc, std::string message, std::string hint) {
  ++errorCount_;
  return diags_.emplace_back(Diagnostic{Severity::Error, loc, std::move(message), std::move(hint), {}});
}

Diagnostic &DiagnosticEngine::warning(SourceLoc loc, std::string message, std::string hint) {
  return diags_.emplace_back(Diagnostic{Severity::Warning, loc, std::move(message), std::move(hint), {}});
}

static const char *severityName(Severity s) {
  switch (s) {
  case Severity::Error: return "error";
  case Severity::Warning: return "warning";
  case Severity::Note: return "note";
  }
  return "error";
}

// "file:line:col: kind: message", the line, and a caret (plus tildes over the rest of the span).
static void renderOne(std::string &out, SourceLoc loc, Severity sev, const std::string &message) {
  if (!loc.valid()) {
    out += fmt::format("{}: {}\n", severityName(sev), message);
    return;
  }
  auto [line, col] = loc.file->lineCol(loc.offset);
  out += fmt::format("{}:{}:{}: {}: {}\n", loc.file->name(), line, col, severityName(sev), message);
  std::string_view text = loc.file->lineText(line);
  auto continuation = [&](size_t i) { return (static_cast<unsigned char>(text[i]) & 0xc0) == 0x80; };
  // A long line (generated source, a minified file) is shown as a window around the column, its
  // cut ends marked "...", and starts and ends on whole UTF-8 characters.
  constexpr size_t kShownBytes = 160, kShownBefore = 60;
  const size_t at = static_cast<size_t>(col - 1);
  size_t first = 0, last = text.size();
  if (text.size() > kShownBytes) {
    first = at > kShownBefore ? std::min(at - kShownBefore, text.size()) : 0;
    while (first > 0 && first < text.size() && continuation(first)) --first;
    last = std::min(text.size(), first + kShownBytes);
    while (last < text.size() && continuation(last)) ++last;
  }
  const std::string lead = first > 0 ? "..." : "";
  out += fmt::format("  {}{}{}\n", lead, text.substr(first, last - first), last < text.size() ? "..." : "");
  // One marker character per character shown: tabs are kept, UTF-8 continuation bytes take no column.
  std::string marker(lead.size(), ' ');
  for (size_t i = first; i < at; ++i)
    if (i >= text.size() || !continuation(i)) marker += i < text.size() && text[i] == '\t' ? '\t' : ' ';
  marker += '^';
  size_t spanOnLine = std::min<size_t>(loc.length, last >= static_cast<size_t>(col) ? last - at : 0);
  for (size_t i = col; i < at + spanOnLine; ++i)
    if (!continuation(i)) marker += '~';
  out += fmt::format("  {}\n", marker);
}

std::string DiagnosticEngine::render(const Diagnostic &d) {
  std::string out;
  renderOne(out, d.loc, d.severity, d.message);
  for (const auto &[loc, text] : d.notes) renderOne(out, loc, Severity::Note, text);
  if (!d.hint.empty()) out += fmt::format("  hint: {}\n", d.hint);
  return out;
}

std::string DiagnosticEngine::render() const {
  // In source order, whichever stage found them; diagnostics without a location come first.
  std::vector<const Diagnostic *> sorted;
  for (const Diagnostic &d : diags_) sorted.push_back(&d);
  std::stable_sort(sorted.begin(), sorted.end(), [](const Diagnostic *a, const Diagnostic *b) {
    if (a->loc.file != b->loc.file) return a->loc.file == nullptr;
    return a->loc.offset < b->loc.offset;
  });
  // As compilers do, the first errors only: past them, mostly consequences (a binary file gave 759).
  constexpr int kShownErrors = 20;
  std::string out;
  int shown = 0;
  for (const Diagnostic *d : sorted) {
    if (shown == kShownErrors) break;
    out += render(*d);
    shown += d->severity == Severity::Error;
  }
  if (errorCount_ > shown) out += fmt::format("(the first {} errors are shown)\n", shown);
  if (errorCount_ > 0) out += fmt::format("{} error{} generated.\n", errorCount_, errorCount_ == 1 ? "" : "s");
  return out;
}

} // namespace enc
