#include "ModuleBuilder.h"

#include <fmt/format.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <vector>

extern char **environ;

namespace encemu {

namespace {

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void writeFile(const std::string &path, const std::string &text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) throw std::runtime_error("the emulator could not write " + path);
}

// FNV-1a: names files only; a hit is confirmed by comparing the stored text.
std::string hashHex(const std::string &text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

std::string cacheDirectory() {
  std::string dir;
  if (const char *d = std::getenv("ENC_CACHE_DIR"); d && *d)
    dir = std::string(d) + "/emulator";
  else
    dir = fmt::format("/tmp/encc-emulator-{}", getuid());
  // Each level: the kernel cache's directory may not exist yet either.
  for (size_t pos = 1; pos != std::string::npos; pos = dir.find('/', pos + 1)) mkdir(dir.substr(0, pos).c_str(), 0755);
  mkdir(dir.c_str(), 0755);
  return dir;
}

std::vector<std::string> kernelNames(const std::string &source) {
  static const std::regex kGlobal(R"(__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\()");
  std::vector<std::string> names;
  for (auto it = std::sregex_iterator(source.begin(), source.end(), kGlobal); it != std::sregex_iterator(); ++it)
    names.push_back((*it)[1]);
  return names;
}

std::string compilerPath() {
  if (const char *c = std::getenv("ENC_EMULATOR_CXX"); c && *c) return c;
  return ENCEMU_DEFAULT_CXX;
}

// Runs the compiler with its output in `logPath`; returns its exit status.
int runCompiler(const std::vector<std::string> &argv, const std::string &logPath) {
  std::vector<char *> args;
  for (const std::string &a : argv) args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error(fmt::format("the emulator could not run the compiler {}", argv[0]));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

} // namespace

Module::~Module() {
  if (handle) dlclose(handle);
}

std::unique_ptr<Module> buildModule(const std::string &source) {
  const std::vector<std::string> names = kernelNames(source);
  std::string text = source;
  text += "\n// Added by the emulator: kernels called with the driver's argument array.\n";
  for (const std::string &n : names) text += fmt::format("extern \"C\" void encemu_thunk_{0}(void **a) {{ encemu::callKernel({0}, a); }}\n", n);

  const std::string cxx = compilerPath();
  const std::vector<std::string> flags = {"-std=c++20", "-O1", "-fPIC", "-shared", "-w", "-include", ENCEMU_PRELUDE,
                                          "-I" ENCEMU_CUDA_INCLUDE};
  std::string key = cxx + "\n" + readFile(ENCEMU_PRELUDE) + "\n";
  for (const std::string &f : flags) key += f + " ";
  const std::string stored = key + "\n" + text;
  const std::string dir = cacheDirectory();
  const std::string base = dir + "/" + hashHex(stored);
  if (readFile(base + ".key") != stored || access((base + ".so").c_str(), R_OK) != 0) {
    const std::string mine = fmt::format("{}.{}", base, getpid());
    writeFile(mine + ".cpp", text);
    std::vector<std::string> argv = {cxx};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.insert(argv.end(), {"-o", mine + ".so", mine + ".cpp"});
    int status = 0;
    try {
      status = runCompiler(argv, mine + ".log");
    } catch (const std::exception &) {
      std::remove((mine + ".cpp").c_str());
      std::remove((mine + ".log").c_str());
      throw;
    }
    std::string log = readFile(mine + ".log");
    std::remove((mine + ".log").c_str());
    if (status != 0) {
      std::remove((mine + ".so").c_str());
      throw std::runtime_error(fmt::format("the host compiler rejected the module ({}):\n{}", mine + ".cpp", log));
    }
    std::remove((mine + ".cpp").c_str());
    // The object first, then the key that vouches for it: a reader never trusts a half-written pair.
    std::rename((mine + ".so").c_str(), (base + ".so").c_str());
    writeFile(mine + ".key", stored);
    std::rename((mine + ".key").c_str(), (base + ".key").c_str());
  }

  auto module = std::make_unique<Module>();
  module->handle = dlopen((base + ".so").c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!module->handle) throw std::runtime_error(fmt::format("the emulator could not load {}: {}", base + ".so", dlerror()));
  auto bind = reinterpret_cast<void (*)(ThreadContext *)>(dlsym(module->handle, "encemu_bind"));
  if (!bind) throw std::runtime_error("the emulator's module has no encemu_bind: was Prelude.h included?");
  bind(&module->context);
  for (const std::string &n : names) {
    auto thunk = reinterpret_cast<KernelThunk>(dlsym(module->handle, ("encemu_thunk_" + n).c_str()));
    if (!thunk) throw std::runtime_error("the emulator's module lacks the thunk for " + n);
    module->kernels[n] = thunk;
  }
  return module;
}

} // namespace encemu
