// `encc repl` on a terminal (a pseudo-terminal here): Ctrl-C at the prompt cancels the line
// being typed instead of ending the session, Ctrl-D inside an unfinished definition discards
// it, and the session goes on after both.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <termios.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

namespace {

class Terminal {
public:
  Terminal() {
    home_ = std::filesystem::temp_directory_path() / ("encc-repl-tty-" + std::to_string(::getpid()));
    std::filesystem::create_directories(home_);
    pid_ = forkpty(&master_, nullptr, nullptr, nullptr);
    if (pid_ == 0) { // the child: encc repl with its own history file
      ::setenv("HOME", home_.c_str(), 1);
      ::setenv("TERM", "dumb", 1);
      ::execl(ENCC_BINARY, ENCC_BINARY, "repl", static_cast<char *>(nullptr));
      ::_exit(127);
    }
  }
  ~Terminal() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
    std::filesystem::remove_all(home_);
  }
  bool started() const { return pid_ > 0 && master_ >= 0; }

  // Types `keys` once the line editor has the terminal in raw mode: libedit prints its prompt
  // before it switches, and keys that arrive in between are the kernel's to interpret (a
  // Ctrl-D there ends a read). Call after waiting for a prompt.
  void type(const std::string &keys) {
    for (int i = 0; i < 3000; ++i) {
      termios mode{};
      if (::tcgetattr(master_, &mode) == 0 && !(mode.c_lflag & ICANON)) break;
      ::usleep(10 * 1000);
    }
    ASSERT_EQ(::write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }

  // Reads until `text` appears in what the terminal showed since the last call that found
  // its text (true), or 30 s pass or the child closes the terminal (false).
  bool waitFor(const std::string &text) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      if (size_t at = screen_.find(text); at != std::string::npos) {
        screen_.erase(0, at + text.size());
        return true;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      char buf[4096];
      ssize_t n = ::read(master_, buf, sizeof buf);
      if (n <= 0) return false;
      screen_.append(buf, static_cast<size_t>(n));
      seen_.append(buf, static_cast<size_t>(n));
    }
  }
  // The child's exit status, or -1 if it does not exit within 30 s.
  int exitStatus() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      // Drain what it still prints; once it has closed the terminal (read fails) it is
      // exiting: wait a little for it to become reapable.
      char buf[4096];
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0 && ::read(master_, buf, sizeof buf) > 0) continue;
      ::usleep(10 * 1000);
    }
    return -1;
  }
  bool alive() { return ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  const std::string &transcript() const { return seen_; }

private:
  std::filesystem::path home_;
  int master_ = -1;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string screen_, seen_;
};

TEST(ReplTerminal, CtrlCCancelsTheLineAndCtrlDTheDefinition) {
  Terminal t;
  ASSERT_TRUE(t.started());
  ASSERT_TRUE(t.waitFor("encc> ")) << t.transcript();
  // Ctrl-C with a half-typed line: the line goes, the session stays.
  t.type("layer Half");
  t.type("\x03");
  ASSERT_TRUE(t.waitFor("encc> ")) << t.transcript();
  EXPECT_TRUE(t.alive()) << t.transcript();
  // Ctrl-C inside a definition drops the definition.
  t.type("layer Foo() {\r");
  ASSERT_TRUE(t.waitFor("...> ")) << t.transcript();
  t.type("\x03");
  ASSERT_TRUE(t.waitFor("discarded the unfinished definition")) << t.transcript();
  ASSERT_TRUE(t.waitFor("encc> ")) << t.transcript();
  // Ctrl-D inside a definition drops it too (a second one would leave).
  t.type("layer Bar() {\r");
  ASSERT_TRUE(t.waitFor("...> ")) << t.transcript();
  t.type("\x04");
  ASSERT_TRUE(t.waitFor("discarded the unfinished definition (Ctrl-D again to leave)")) << t.transcript();
  ASSERT_TRUE(t.waitFor("encc> ")) << t.transcript();
  // Still a working session: a layer defined and listed, then Ctrl-D at the prompt leaves.
  t.type("layer Twice() {\r  forward(X: [N]) -> Y: [N] {\r    Y[i] = 2 * X[i]\r  }\r}\r");
  ASSERT_TRUE(t.waitFor("defined Twice")) << t.transcript();
  ASSERT_TRUE(t.waitFor("encc> ")) << t.transcript();
  t.type("\x04");
  EXPECT_EQ(t.exitStatus(), 0) << t.transcript();
}

} // namespace
