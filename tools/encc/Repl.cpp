// encc repl: type layer definitions, look at them at any compilation stage, run and time them.
//
// A line starting with ':' is a command; anything else is .enc text, read until its braces
// balance and then checked and added to the session (a layer defined again replaces the old
// definition). Errors are printed and the session goes on.
#include "tools/encc/Commands.h"

#include "runtime/Npy.h"
#include "support/Error.h"
#include "support/InternalError.h"
#include "support/Suggest.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <llvm/LineEditor/LineEditor.h>

#include <fcntl.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

namespace enc::cli {
namespace {

constexpr const char *kHelp = R"(Commands (NAME=VALUE pairs name hyper-parameters, inputs as NAME=random:D0,D1,... or NAME=FILE.npy,
or parameters and buffers as NAME=FILE.npy; --dtype T runs one command in another dtype):
  layer L(...) {{ ... }}             define a layer (several lines: it ends where its braces balance)
  :layers                          the layers there are (shipped, loaded, defined here)
  :emit STAGE LAYER [NAME=VALUE...] [--backward] [--size N=V] [--dtype T] [--arch sm_XX] [--target cpu|gpu]
                                   print the layer at STAGE: ir, grad, loops, cuda, ptx or llvm
  :eval LAYER [NAME=VALUE...] [--dtype T]  run forward on the inputs; print each output (values when short)
  :grad LAYER [NAME=VALUE...]      forward, then backward from output gradients (Y=dy.npy, else random)
  :time LAYER [NAME=VALUE...]      forward and backward times (as encc bench, 5 runs after a first that compiles)
  :load FILE.enc                   add a file's layers to the session
  :set dtype|device|mode|seed V    session settings (now: {})
  :help                            this text
  :quit                            leave (or end of input)
)";

std::vector<std::string> words(const std::string &line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Brace depth of .enc text, ignoring comments ('#' to the end of the line).
int braceDepth(const std::string &text) {
  int depth = 0;
  bool comment = false;
  for (char c : text) {
    if (c == '\n') comment = false;
    else if (c == '#') comment = true;
    else if (!comment && c == '{') ++depth;
    else if (!comment && c == '}') --depth;
  }
  return depth;
}

class Session {
public:
  explicit Session(const std::string &file) : shipped_(Library::shipped()) {
    if (!file.empty()) load(file);
  }

  // One complete input: a command or a definition. False on :quit.
  bool handle(const std::string &input) {
    try {
      if (input.starts_with(":")) return command(words(input.substr(1)));
      define("<repl>", input);
      return true;
    } catch (const CompileError &e) {
      std::cerr << e.what();
    } catch (const Error &e) {
      std::cerr << "encc: " << Error(replSpelling(e.what()), replSpelling(e.hint())).render() << "\n";
    } catch (const InternalError &e) {
      std::cerr << "encc: " << e.render() << "\n";
    } catch (const std::exception &e) {
      std::cerr << "encc: error: " << e.what() << "\n";
    }
    failed_ = true;
    return true;
  }

  // Whether any input failed (a script that meets an error exits with status 1).
  bool failed() const { return failed_; }

private:
  struct Snippet {
    std::string name, text;
    std::vector<std::string> layers;
  };
  std::shared_ptr<const Library> shipped_, session_; // session_: loaded files and definitions
  std::vector<Snippet> snippets_;
  EvalOptions settings_;
  bool failed_ = false;

  // The subcommands the REPL shares with the command line word their errors for it
  // ("pass --set K=VALUE"); here the same values are plain NAME=VALUE words.
  static std::string replSpelling(std::string text) {
    for (const char *option : {"pass --set ", "pass --input ", "--set ", "--input ", "--param ", "--grad "}) {
      std::string with = option, instead = with.starts_with("pass ") ? "give " : "";
      for (size_t at = text.find(with); at != std::string::npos; at = text.find(with, at + instead.size()))
        text.replace(at, with.size(), instead);
    }
    return text;
  }

  std::string settingsText() const {
    return fmt::format("dtype {}, device {}, mode {}, seed {}", settings_.dtype, settings_.device, settings_.mode,
                       settings_.seed);
  }

  // Checks `text` alone (so its errors point into it), then rebuilds the session's library
  // with it in place of earlier definitions of the same layers.
  void define(const std::string &name, const std::string &text) {
    auto alone = Library::fromSource(name, text); // throws CompileError with the diagnostics
    Snippet s{name, text, alone->layerNames()};
    if (s.layers.empty()) throw Error("no layer in that text", "a definition starts with 'layer NAME(...) {'");
    std::vector<Snippet> kept;
    for (const Snippet &old : snippets_) {
      bool replaced = std::any_of(old.layers.begin(), old.layers.end(), [&](const std::string &l) {
        return std::find(s.layers.begin(), s.layers.end(), l) != s.layers.end();
      });
      if (!replaced) kept.push_back(old);
    }
    kept.push_back(s);
    std::vector<std::unique_ptr<SourceFile>> files;
    for (const Snippet &k : kept) files.push_back(std::make_unique<SourceFile>(k.name, k.text));
    DiagnosticEngine diags;
    auto lib = Library::check(std::move(files), diags);
    if (diags.hasErrors()) throw CompileError(diags.render());
    session_ = lib;
    snippets_ = std::move(kept);
    for (const std::string &l : s.layers)
      std::cout << fmt::format("defined {}{}\n", l, shipped_->find(l) ? " (hides the shipped layer)" : "");
  }

  void load(const std::string &path) { define(path, Library::readSource(path)); }

  std::shared_ptr<const Library> libraryOf(const std::string &layer) const {
    if (session_ && session_->find(layer)) return session_;
    if (shipped_->find(layer)) return shipped_;
    std::string names;
    for (const std::string &n : layerNames()) names += (names.empty() ? "" : ", ") + n;
    throw Error(fmt::format("unknown layer '{}'{}", layer, didYouMean(layer, layerNames())),
                fmt::format("the layers are: {}", names));
  }

  std::vector<std::string> layerNames() const {
    std::set<std::string> all;
    for (const std::string &n : shipped_->layerNames()) all.insert(n);
    if (session_)
      for (const std::string &n : session_->layerNames()) all.insert(n);
    return {all.begin(), all.end()};
  }

  bool command(const std::vector<std::string> &w) {
    const std::string cmd = w.empty() ? "" : w[0];
    if (cmd == "quit" || cmd == "q" || cmd == "exit") return false;
    if (cmd == "help" || cmd == "h" || cmd == "?") {
      std::cout << fmt::format(kHelp, settingsText());
    } else if (cmd == "layers") {
      for (const std::string &n : layerNames())
        std::cout << n << (session_ && session_->find(n) ? "  (this session)" : "") << "\n";
    } else if (cmd == "load") {
      if (w.size() != 2) throw Error(":load takes one file", "e.g. :load my_layers.enc");
      load(w[1]);
    } else if (cmd == "set") {
      set(w);
    } else if (cmd == "emit") {
      emit(w);
    } else if (cmd == "eval" || cmd == "grad" || cmd == "time") {
      run(cmd, w);
    } else {
      throw Error(fmt::format("unknown command ':{}'{}", cmd,
                              didYouMean(":" + cmd, {":layers", ":emit", ":eval", ":grad", ":time", ":load", ":set",
                                                     ":help", ":quit"})),
                  "type :help for the commands");
    }
    return true;
  }

  void set(const std::vector<std::string> &w) {
    if (w.size() != 3) throw Error(":set takes a setting and a value", "e.g. :set dtype f64");
    const std::string &what = w[1], &value = w[2];
    if (what == "dtype") {
      parseDTypeOption(value);
      settings_.dtype = value;
    } else if (what == "device") {
      if (value != "auto" && value != "cpu" && value != "cuda")
        throw Error(fmt::format("unknown device '{}'", value), "use auto, cpu or cuda");
      settings_.device = value;
      settings_.deviceGiven = true;
    } else if (what == "mode") {
      if (value != "train" && value != "eval") throw Error(fmt::format("unknown mode '{}'", value), "use train or eval");
      settings_.mode = value;
    } else if (what == "seed") {
      // from_chars, unlike stoull, refuses "-1" rather than wrapping it to 2^64 - 1.
      uint64_t seed = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seed);
      if (ec != std::errc() || end != value.data() + value.size())
        throw Error(fmt::format("bad seed '{}'", value), "a non-negative integer");
      settings_.seed = seed;
    } else {
      throw Error(fmt::format("unknown setting '{}'", what), "dtype, device, mode or seed");
    }
    std::cout << settingsText() << "\n";
  }

  void emit(const std::vector<std::string> &w) {
    if (w.size() < 3) throw Error(":emit takes a stage and a layer", "e.g. :emit cuda Encoding D=8 K=4");
    EmitOptions o;
    o.kind = w[1];
    o.layer = w[2];
    o.dtype = settings_.dtype == "f64" || settings_.dtype == "f16" || settings_.dtype == "bf16" ? settings_.dtype : "f32";
    o.mode = settings_.mode;
    if (o.kind == "ast") throw Error(":emit ast is not available here", "use encc emit --emit=ast FILE.enc");
    std::set<std::string> given; // options that take one value, as the command line refuses them twice
    for (size_t i = 3; i < w.size(); ++i) {
      const std::string &a = w[i];
      auto value = [&]() -> const std::string & {
        if (i + 1 >= w.size()) throw Error(fmt::format("{} needs a value", a));
        if (a != "--size" && !given.insert(a).second) throw Error(fmt::format("{} is given twice", a), "give it once");
        return w[++i];
      };
      if (a == "--backward") o.backward = true;
      else if (a == "--size") o.sizes.push_back(value());
      else if (a == "--dtype") o.dtype = value();
      else if (a == "--arch") o.arch = value();
      else if (a == "--target") o.target = value();
      else if (a.starts_with("--")) throw Error(fmt::format("unknown option {}", a), "type :help for the options");
      else o.sets.push_back(a);
    }
    auto lib = libraryOf(o.layer);
    std::string text = emitOne(o, *lib, lib->get(o.layer));
    std::cout << text << (text.ends_with('\n') ? "" : "\n");
  }

  void run(const std::string &cmd, const std::vector<std::string> &w) {
    if (w.size() < 2) throw Error(fmt::format(":{} takes a layer", cmd), fmt::format("e.g. :{} GramMatrix X=random:2,4,8,8", cmd));
    EvalOptions o = settings_;
    o.layer = w[1];
    auto lib = libraryOf(o.layer);
    const LayerSymbols &sym = lib->get(o.layer);
    std::vector<std::string> givenGrads; // NAME=... naming an output: its gradient (for :grad)
    bool dtypeGiven = false;
    for (size_t i = 2; i < w.size(); ++i) {
      if (w[i] == "--dtype") { // this command only; :set dtype changes the session's
        if (i + 1 == w.size()) throw Error("--dtype needs a value", "f32, f64, f16 or bf16");
        if (dtypeGiven) throw Error("--dtype is given twice", "give it once");
        dtypeGiven = true;
        o.dtype = w[++i];
        continue;
      }
      std::string name = w[i].substr(0, w[i].find('='));
      const TensorSymbol *t = sym.find(name);
      if (t && sym.hyperParam(name) && !namesATensor(w[i])) t = nullptr; // the hyper-parameter
      if (t && t->role == TensorRole::Output) givenGrads.push_back(w[i]);
      else if (t && (t->role == TensorRole::Param || t->role == TensorRole::Buffer)) o.params.push_back(w[i]);
      else (t && t->role == TensorRole::Input ? o.inputs : o.sets).push_back(w[i]);
    }
    if (!givenGrads.empty() && cmd == "eval")
      throw Error(fmt::format("{} names an output: only :grad and :time take output gradients", givenGrads[0]),
                  "give inputs and hyper-parameters");
    std::vector<std::string> missing;
    for (const TensorSymbol &t : sym.tensors)
      if (t.role == TensorRole::Input && !std::any_of(o.inputs.begin(), o.inputs.end(), [&](const std::string &s) {
            return s.substr(0, s.find('=')) == t.name;
          }))
        missing.push_back(t.name);
    if (!missing.empty())
      throw Error(fmt::format("layer {} needs the input{} {}", o.layer, missing.size() > 1 ? "s" : "", fmt::join(missing, ", ")),
                  fmt::format("e.g. {}=random:2,3,4 or {}=input.npy", missing[0], missing[0]));
    if (cmd == "eval") {
      EvalResult r = evalLayer(lib, o);
      for (const auto &[name, t] : r.outputs) print(name, t);
      return;
    }
    if (cmd == "time") {
      o.grads = givenGrads;
      BenchResult r = benchLayer(lib, o, 5, true);
      std::cout << fmt::format("{} ({}, {}): {}\n", o.layer, o.dtype, r.device, benchSummary(r, true));
      return;
    }
    // Backward seeds: those given, and random gradients shaped like the other outputs (a
    // loss's [] too).
    o.grads = givenGrads;
    EvalResult r = evalLayer(lib, o, /*randomGrads=*/true);
    for (const auto &[name, t] : r.outputs) print(name, t);
    for (const auto &[name, t] : r.grads) print("grad " + name, t);
  }

  // Whether NAME=VALUE's value reads as a tensor: random:..., a .npy file name, or an existing
  // file. Decides a name that is a hyper-parameter and a tensor too (Conv2d's bias).
  static bool namesATensor(const std::string &word) {
    size_t eq = word.find('=');
    if (eq == std::string::npos) return false;
    std::string value = word.substr(eq + 1);
    std::error_code ec;
    return value.starts_with("random:") || value.ends_with(".npy") || std::filesystem::exists(value, ec);
  }

  static void print(const std::string &name, const Tensor &t) {
    std::cout << fmt::format("{}: {} {}  ({})\n", name, dtypeName(t.dtype()), shapeString(t.shape()), summary(t));
    if (t.numel() == 0 || t.numel() > 24) return;
    std::string values;
    for (int64_t i = 0; i < t.numel(); ++i) values += fmt::format("{}{:.6g}", i ? " " : "", t.at(i));
    std::cout << "  " << values << "\n";
  }
};

// Ctrl-C at the prompt cancels the line being typed instead of ending the session. libedit
// retries a read that a signal interrupted once, then gives up and returns no line; making
// stdin non-blocking in the handler turns that retry into the give-up, and the flag tells the
// loop that this was Ctrl-C, not end of input. Outside the prompt Ctrl-C stops encc as usual.
volatile std::sig_atomic_t interrupted = 0;

void onInterrupt(int) {
  interrupted = 1;
  int flags = fcntl(STDIN_FILENO, F_GETFL);
  if (flags != -1) fcntl(STDIN_FILENO, F_SETFL, flags | O_NONBLOCK);
}

// One line from the editor, with Ctrl-C cancelling it (`cancelled` set, no line).
std::optional<std::string> readLineCancellable(llvm::LineEditor &editor, bool &cancelled) {
  struct sigaction action {}, previous {};
  action.sa_handler = onInterrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0; // no SA_RESTART: the read must see the interruption
  interrupted = 0;
  sigaction(SIGINT, &action, &previous);
  std::optional<std::string> line = editor.readLine();
  sigaction(SIGINT, &previous, nullptr);
  int flags = fcntl(STDIN_FILENO, F_GETFL);
  if (flags != -1 && (flags & O_NONBLOCK)) fcntl(STDIN_FILENO, F_SETFL, flags & ~O_NONBLOCK);
  cancelled = !line && interrupted;
  return line;
}

} // namespace

int runRepl(const std::string &file) {
  const bool terminal = isatty(STDIN_FILENO);
  std::optional<llvm::LineEditor> editor;
  if (terminal) {
    const char *home = std::getenv("HOME");
    editor.emplace("encc", home && *home ? std::string(home) + "/.encc_history" : "");
    std::cout << "encc repl: :help for the commands, :quit to leave\n";
  }
  Session session(file);
  std::string pending;
  for (;;) {
    std::optional<std::string> line;
    if (editor) {
      editor->setPrompt(pending.empty() ? "encc> " : "  ...> ");
      bool cancelled = false;
      line = readLineCancellable(*editor, cancelled);
      if (cancelled) {
        std::cout << "\n";
        if (!pending.empty()) std::cerr << "encc: discarded the unfinished definition\n";
        pending.clear();
        continue;
      }
    } else {
      std::string l;
      if (std::getline(std::cin, l)) line = l;
    }
    if (!line) {
      // Ctrl-D inside a definition drops it; a second one (or one at the prompt) leaves.
      if (!editor || pending.empty()) break;
      std::cout << "\n";
      std::cerr << "encc: discarded the unfinished definition (Ctrl-D again to leave)\n";
      pending.clear();
      continue;
    }
    if (pending.empty() && line->find_first_not_of(" \t") == std::string::npos) continue;
    if (pending.empty() && line->starts_with(":")) {
      if (!session.handle(*line)) break;
      continue;
    }
    pending += *line + "\n";
    if (braceDepth(pending) > 0) continue;
    session.handle(pending);
    pending.clear();
  }
  if (!pending.empty()) {
    std::cerr << "encc: error: input ended inside a definition (unbalanced braces)\n";
    return 1;
  }
  // A script (not a terminal) fails as a whole when one of its inputs failed.
  return !editor && session.failed() ? 1 : 0;
}

} // namespace enc::cli
