// Running the real `encc` (ENCC_BINARY) from tests: each test gets a temporary directory of
// its own, and stdout, stderr and the exit status are captured separately.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace enc::testing {

namespace fs = std::filesystem;

inline std::string quote(const std::string &s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool contains(const std::string &haystack, const std::string &needle) {
  return haystack.find(needle) != std::string::npos;
}

// Sets (or with nullptr unsets) an environment variable for the scope; `encc` children inherit it.
class ScopedEnv {
public:
  ScopedEnv(std::string name, const char *value) : name_(std::move(name)) {
    if (const char *old = std::getenv(name_.c_str())) old_ = old;
    if (value) ::setenv(name_.c_str(), value, 1);
    else ::unsetenv(name_.c_str());
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

private:
  std::string name_;
  std::optional<std::string> old_;
};

struct CliResult {
  int status = -1; // exit status; -1 if killed by a signal
  std::string out, err;
};

inline std::ostream &operator<<(std::ostream &os, const CliResult &r) {
  return os << "exit status " << r.status << "\n--- stdout ---\n" << r.out << "--- stderr ---\n" << r.err;
}

class CliTest : public ::testing::Test {
protected:
  fs::path dir;

  void SetUp() override {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir = fs::temp_directory_path() / fmt::format("encc-{}-{}-{}", info->test_suite_name(), getpid(), info->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir); // kept for a look when a test fails
  }

  fs::path path(const std::string &name) const { return dir / name; }

  // Runs `encc ARGS` in the test's directory; ARGS is shell text (quote paths with quote()).
  CliResult encc(const std::string &args) const {
    return enccWith(fmt::format("ENC_CACHE_DIR={}", quote((dir / "cache").string())), args);
  }

  // The same with ENVIRONMENT, shell text put before the command (`env -u HOME TMPDIR=...`),
  // in place of the test's own cache directory.
  CliResult enccWith(const std::string &environment, const std::string &args) const {
    std::string cmd = fmt::format("cd {} && {} {} {} >{} 2>{}", quote(dir.string()), environment, quote(ENCC_BINARY),
                                  args, quote((dir / "stdout.txt").string()), quote((dir / "stderr.txt").string()));
    int raw = std::system(cmd.c_str());
    CliResult r;
    r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = slurp(dir / "stdout.txt");
    r.err = slurp(dir / "stderr.txt");
    return r;
  }

  // Every failure: status 1, an error on stderr mentioning each of `mentions`, nothing on stdout.
  void expectFailure(const CliResult &r, const std::vector<std::string> &mentions) const {
    EXPECT_EQ(r.status, 1) << r;
    EXPECT_TRUE(contains(r.err, "error:")) << r;
    EXPECT_TRUE(r.out.empty()) << r;
    for (const std::string &m : mentions) EXPECT_TRUE(contains(r.err, m)) << "expected '" << m << "' in\n" << r;
  }
};

} // namespace enc::testing
