#include "runtime/Library.h"

#include "dsl/Parser.h"
#include "support/Suggest.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace enc {

std::string Library::readSource(const std::string &path) {
  // An ifstream opens a directory and reads it as empty text.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(fmt::format("{} is a directory, not a .enc file", path), "give the path of a .enc file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read '{}': {}", path, std::strerror(errno)), "check the path");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::shared_ptr<const Library> Library::check(std::vector<std::unique_ptr<SourceFile>> files, DiagnosticEngine &diags) {
  auto lib = std::make_shared<Library>();
  lib->files_ = std::move(files);
  for (const auto &f : lib->files_) {
    lib->modules_.push_back(parse(*f, diags));
  }
  // Check after all parsing so modules_ no longer moves (symbols point into the ASTs).
  for (ast::Module &m : lib->modules_) lib->checked_.push_back(enc::check(m, diags));
  return lib;
}

std::shared_ptr<const Library> Library::fromSource(std::string name, std::string text) {
  std::vector<std::unique_ptr<SourceFile>> files;
  files.push_back(std::make_unique<SourceFile>(std::move(name), std::move(text)));
  DiagnosticEngine diags;
  auto lib = check(std::move(files), diags);
  if (diags.hasErrors()) throw CompileError(diags.render());
  return lib;
}

std::shared_ptr<const Library> Library::fromFile(const std::string &path) { return fromSource(path, readSource(path)); }

std::string chooseLayerDir(const std::string &program, const std::string &buildDir, const std::string &sourceLayers,
                           const std::string &installedLayers) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path build = fs::weakly_canonical(buildDir, ec);
  const fs::path exe = fs::weakly_canonical(program, ec);
  auto [b, e] = std::mismatch(build.begin(), build.end(), exe.begin(), exe.end());
  const bool inBuildTree = !program.empty() && b == build.end();
  if (inBuildTree && fs::is_directory(sourceLayers, ec)) return sourceLayers;
  if (fs::is_directory(installedLayers, ec)) return installedLayers;
  return fs::is_directory(sourceLayers, ec) ? sourceLayers : installedLayers;
}

std::string Library::shippedDir() {
  if (const char *env = std::getenv("ENC_LAYER_PATH"); env && *env) return env;
  std::error_code ec;
  const std::string program = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  return chooseLayerDir(program, ENC_BUILD_DIR, ENC_LAYER_DIR, ENC_INSTALLED_LAYER_DIR);
}

std::shared_ptr<const Library> Library::shipped() {
  std::string dir = shippedDir();
  std::vector<std::string> paths;
  std::error_code ec;
  for (const auto &entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().extension() == ".enc") paths.push_back(entry.path().string());
  if (ec || paths.empty())
    throw Error(fmt::format("no shipped layers found in '{}'", dir), "set ENC_LAYER_PATH to the directory holding layers/*.enc");
  std::sort(paths.begin(), paths.end());
  std::vector<std::unique_ptr<SourceFile>> files;
  for (const std::string &p : paths) files.push_back(std::make_unique<SourceFile>(p, readSource(p)));
  DiagnosticEngine diags;
  auto lib = check(std::move(files), diags);
  if (diags.hasErrors()) throw CompileError(diags.render());
  std::const_pointer_cast<Library>(lib)->shipped_ = true;
  return lib;
}

const LayerSymbols *Library::findSubLayer(const std::string &layer) const {
  if (const LayerSymbols *l = find(layer)) return l;
  if (shipped_) return nullptr;
  std::lock_guard<std::mutex> lock(preludeMutex_);
  if (!prelude_) prelude_ = shipped();
  return prelude_->find(layer);
}

const LayerSymbols *Library::find(const std::string &layer) const {
  for (const CheckedModule &m : checked_)
    if (const LayerSymbols *l = m.find(layer)) return l;
  return nullptr;
}

const LayerSymbols &Library::get(const std::string &layer) const {
  if (const LayerSymbols *l = find(layer)) return *l;
  std::string names;
  for (const std::string &n : layerNames()) names += (names.empty() ? "" : ", ") + n;
  throw Error(fmt::format("no layer named '{}'{}", layer, didYouMean(layer, layerNames())),
              names.empty() ? "" : "available layers: " + names);
}

std::vector<std::string> Library::layerNames() const {
  std::vector<std::string> out;
  for (const CheckedModule &m : checked_)
    for (const LayerSymbols &l : m.layers) out.push_back(l.layer->name.text);
  return out;
}

} // namespace enc
