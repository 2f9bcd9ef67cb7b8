// encc check: diagnostics for .enc files.
#include "tools/encc/Commands.h"

#include "compiler/HyperParams.h"
#include "runtime/Layer.h"

#include <fmt/format.h>

#include <iostream>

namespace enc::cli {

int runCheck(const std::vector<std::string> &files) {
  int status = 0;
  for (const std::string &path : files) {
    std::vector<std::unique_ptr<SourceFile>> sources;
    sources.push_back(std::make_unique<SourceFile>(path, Library::readSource(path)));
    DiagnosticEngine diags;
    auto lib = Library::check(std::move(sources), diags);
    std::cerr << diags.render();
    if (diags.hasErrors()) {
      status = 1;
      continue;
    }
    // A network's statements are checked when it expands: with its defaults where it has them.
    bool expanded = true;
    for (const std::string &n : lib->layerNames()) {
      const LayerSymbols &layer = lib->get(n);
      if (!layer.network) continue;
      auto hyper = resolveHyperParams(layer, {}, /*allowMissing=*/true);
      try {
        instantiateLayer(*lib, layer, hyper);
      } catch (const CompileError &e) {
        std::cerr << e.what();
        expanded = false;
      } catch (const Error &e) {
        std::cout << fmt::format("{}: network {} is checked when instantiated ({})\n", path, n, e.what());
      }
    }
    if (!expanded) {
      status = 1;
      continue;
    }
    std::string names;
    for (const std::string &n : lib->layerNames()) names += (names.empty() ? "" : ", ") + n;
    std::cout << fmt::format("{}: ok ({})\n", path, names.empty() ? "no layers" : names);
  }
  return status;
}

} // namespace enc::cli
