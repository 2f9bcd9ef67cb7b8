// Where encc eval writes: checked (and its directories created) before the run, so that a
// mistake in a path fails at once instead of after a long run whose results it would lose.
#include "tools/encc/Commands.h"

#include "support/Error.h"

#include <fmt/format.h>

#include <filesystem>
#include <system_error>

namespace fs = std::filesystem;

namespace enc::cli {
namespace {

// The first of `p` and its ancestors that exists and is not a directory ("" when none).
std::string fileInTheWay(const fs::path &p) {
  fs::path prefix;
  for (const fs::path &part : p) {
    prefix /= part;
    std::error_code ec;
    if (fs::exists(prefix, ec) && !fs::is_directory(prefix, ec)) return prefix.string();
  }
  return "";
}

} // namespace

void makeOutputDirectory(const std::string &option, const std::string &dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!ec && fs::is_directory(dir, ec)) return;
  const std::string hint = fmt::format("{} names a directory for the outputs; encc creates it and its parents", option);
  if (std::string file = fileInTheWay(dir); !file.empty())
    throw Error(file == dir ? fmt::format("{} {}: not a directory", option, dir)
                            : fmt::format("{} {}: {} is not a directory", option, dir, file),
                hint);
  throw Error(fmt::format("{} {}: cannot create directory {}: {}", option, dir, dir, ec.message()),
              hint + "; check the path and its permissions");
}

void checkOutputFile(const std::string &option, const std::string &path) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw Error(fmt::format("{} {}: is a directory", option, path), "give the name of a file to write");
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty() || fs::is_directory(parent, ec)) return;
  throw Error(fmt::format("{} {}: {} is not a directory", option, path, parent.string()),
              "create that directory first, or write the file into the --out directory");
}

} // namespace enc::cli
