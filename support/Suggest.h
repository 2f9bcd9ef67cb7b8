// "Did you mean ...?" for a name that is not one of a list (layers, hyper-parameters,
// subcommands): the candidate a user most likely meant, or none.
#pragma once

#include <algorithm>
#include <cctype>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace enc {

namespace suggest_detail {

inline std::string lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Levenshtein distance (insertions, deletions, substitutions).
inline size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// `abbreviation`'s letters appear in `word` in order, starting with its first ("SyncBN" in
// "SyncBatchNorm").
inline bool abbreviates(std::string_view abbreviation, std::string_view word) {
  if (abbreviation.size() < 2 || word.empty() || abbreviation[0] != word[0]) return false;
  size_t at = 0;
  for (char c : word)
    if (at < abbreviation.size() && c == abbreviation[at]) ++at;
  return at == abbreviation.size();
}

} // namespace suggest_detail

// The candidate `name` most likely stands for, ignoring case: the same name in other case,
// else the nearest within a few edits (a third of the name's length, at least 2), else the
// shortest candidate it abbreviates. None when nothing is close.
inline std::optional<std::string> nearestName(std::string_view name, const std::vector<std::string> &candidates) {
  using namespace suggest_detail;
  const std::string key = lower(name);
  if (key.empty()) return std::nullopt;
  for (const std::string &c : candidates)
    if (lower(c) == key) return c;
  const size_t limit = std::max<size_t>(2, key.size() / 3);
  const std::string *best = nullptr;
  size_t bestDistance = limit + 1;
  for (const std::string &c : candidates) {
    size_t d = editDistance(key, lower(c));
    if (d < bestDistance) best = &c, bestDistance = d;
  }
  if (best) return *best;
  for (const std::string &c : candidates)
    if (abbreviates(key, lower(c)) && (!best || c.size() < best->size())) best = &c;
  if (best) return *best;
  return std::nullopt;
}

// "; did you mean 'X'?" or "".
inline std::string didYouMean(std::string_view name, const std::vector<std::string> &candidates) {
  auto near = nearestName(name, candidates);
  return near ? "; did you mean '" + *near + "'?" : std::string();
}

} // namespace enc
