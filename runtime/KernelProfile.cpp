#include "runtime/KernelProfile.h"

#include "support/Env.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <vector>

namespace enc {
namespace {

struct Entry {
  double seconds = 0;
  int64_t calls = 0;
};

struct Profile {
  std::mutex mu;
  std::map<std::string, Entry> kernels;

  ~Profile() {
    if (kernels.empty()) return;
    std::vector<std::pair<std::string, Entry>> rows(kernels.begin(), kernels.end());
    std::sort(rows.begin(), rows.end(), [](const auto &a, const auto &b) { return a.second.seconds > b.second.seconds; });
    double total = 0;
    for (const auto &[_, e] : rows) total += e.seconds;
    std::string out = fmt::format("encc: kernel profile ({:.3f} s in kernels)\n{:>10} {:>6} {:>8}  kernel\n", total,
                                  "ms", "%", "calls");
    for (const auto &[name, e] : rows)
      out += fmt::format("{:>10.3f} {:>6.1f} {:>8}  {}\n", e.seconds * 1e3, total > 0 ? 100 * e.seconds / total : 0.0,
                         e.calls, name);
    std::fputs(out.c_str(), stderr);
  }
};

Profile &profile() {
  static Profile p; // printed by its destructor at exit
  return p;
}

} // namespace

bool kernelProfiling() {
  static const bool on = envFlag("ENC_PROFILE");
  return on;
}

void recordKernelTime(const std::string &kernel, double seconds) {
  Profile &p = profile();
  std::lock_guard<std::mutex> lock(p.mu);
  Entry &e = p.kernels[kernel];
  e.seconds += seconds;
  ++e.calls;
}

} // namespace enc
