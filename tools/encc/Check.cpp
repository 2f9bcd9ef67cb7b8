// encc check: diagnostics for .enc files.
#include "tools/encc/Commands.h"

#include <fmt/format.h>

#include <iostream>

namespace enc::cli {

int runCheck(const std::vector<std::string> &files) {
  int status = 0;
  for (const std::string &path : files) {
    std::vector<std::unique_ptr<SourceFile>> sources;
    sources.push_back(std::make_unique<SourceFile>(path, readFile(path)));
    DiagnosticEngine diags;
    auto lib = Library::check(std::move(sources), diags);
    std::cerr << diags.render();
    if (diags.hasErrors()) {
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
