// Layer::saveState and Layer::loadState: a layer's parameters and buffers in a safetensors file, by
// the names torch's state_dict() gives them, so weights move between encc and PyTorch.
#include "runtime/Layer.h"

#include "runtime/Safetensors.h"
#include "support/Error.h"
#include "support/Suggest.h"

#include <fmt/ranges.h>

#include <optional>
#include <string_view>

namespace enc {

namespace {

// torch's BatchNorm counts its training passes in an int64 buffer that encc's layers do not have (their
// momentum is fixed); a torch state_dict always holds it.
bool isTorchOnlyKey(const std::string &name) {
  constexpr std::string_view kCounter = "num_batches_tracked";
  return name == kCounter || name.ends_with("." + std::string(kCounter));
}

std::string quotedList(const std::vector<std::string> &names) {
  std::string out;
  for (const std::string &n : names) out += fmt::format("{}'{}'", out.empty() ? "" : ", ", n);
  return out;
}

// A prefix P such that every unexpected key is P + a missing key: the file holds a submodule's state
// under its parent's names ("bn.weight" for "weight").
std::optional<std::string> commonPrefix(const std::vector<std::string> &unexpected, const std::vector<std::string> &missing) {
  std::optional<std::string> prefix;
  for (const std::string &u : unexpected) {
    std::optional<std::string> mine;
    for (const std::string &m : missing)
      if (u.size() > m.size() && u.ends_with(m) && u[u.size() - m.size() - 1] == '.') mine = u.substr(0, u.size() - m.size());
    if (!mine || (prefix && *prefix != *mine)) return std::nullopt;
    prefix = mine;
  }
  return prefix;
}

} // namespace

void Layer::saveState(const std::string &path) const { writeSafetensors(path, stateDict(), {{"format", "pt"}}); }

Layer::StateKeys Layer::loadState(const std::string &path, bool strict) {
  SafetensorsFile file = readSafetensorsFile(path, isTorchOnlyKey);
  StateKeys keys;
  for (const auto &[n, _] : params_)
    if (!file.tensors.count(n)) keys.missing.push_back(n);
  for (const auto &[n, _] : file.tensors)
    if (!params_.count(n)) keys.unexpected.push_back(n);

  if (strict && (!keys.missing.empty() || !keys.unexpected.empty())) {
    std::vector<std::string> problems;
    if (!keys.missing.empty()) problems.push_back("missing keys " + quotedList(keys.missing));
    if (!keys.unexpected.empty()) {
      std::string list;
      for (const std::string &u : keys.unexpected) {
        list += fmt::format("{}'{}'", list.empty() ? "" : ", ", u);
        if (auto near = nearestName(u, keys.missing)) list += fmt::format(" (did you mean '{}'?)", *near);
      }
      problems.push_back("unexpected keys " + list);
    }
    std::string hint = "loadState(path, /*strict=*/false) loads the keys both have";
    std::optional<std::string> prefix = commonPrefix(keys.unexpected, keys.missing);
    if (keys.missing.empty()) prefix.reset();
    if (prefix) hint = fmt::format("the file's keys start with '{}': save that submodule's state_dict() alone", *prefix);
    std::string theirs;
    for (const auto &[n, _] : params_) theirs += fmt::format("{}{}", theirs.empty() ? "" : ", ", n);
    throw StateKeysError(fmt::format("{}: does not match layer {} (whose keys are {}): {}", path, name_,
                                     theirs.empty() ? "none" : theirs, fmt::join(problems, "; ")),
                         hint, keys, prefix);
  }

  // Every shape is checked before anything is set, so a failed load leaves the layer as it was.
  for (const auto &[n, t] : file.tensors) {
    auto it = params_.find(n);
    if (it != params_.end() && t.shape() != it->second.shape()) {
      const TensorSymbol *decl = symbols_->find(n);
      throw Error(fmt::format("{}: tensor '{}' has shape {}, but layer {}'s {} '{}' has shape {}{}", path, n,
                              shapeString(t.shape()), name_, isParameter(n) ? "parameter" : "buffer", n,
                              shapeString(it->second.shape()),
                              decl && decl->loc.valid() ? fmt::format(" (declared at {})", decl->loc.where()) : ""),
                  "the file was saved from a layer with other hyper-parameters");
    }
  }
  for (const auto &[n, t] : file.tensors)
    if (params_.count(n)) setParam(n, t);
  return keys;
}

} // namespace enc
