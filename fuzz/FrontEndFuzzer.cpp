// libFuzzer target: .enc text through the front end and the compiler, as far as a run goes
// without compiling machine code. Parse and check (Library::fromSource); then, for every layer
// that checks, with its defaults (small values for hyper-parameters without one), a network
// expanded (instantiateLayer), the forward and backward tensor programs built, every input size
// set to 3, and both lowered to loop IR for the CPU, with the IR verified after every pass.
#include "FuzzSupport.h"

#include "compiler/HyperParams.h"
#include "compiler/Pipeline.h"
#include "compiler/StorageTypes.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"

#include <map>
#include <string>

namespace {

using namespace enc;

// Values for hyper-parameters without a default: small, like a user's first try.
std::map<std::string, std::string> smallSettings(const LayerSymbols &sym) {
  std::map<std::string, std::string> settings;
  for (const ast::HyperParam &h : sym.layer->hyperParams) {
    if (h.defaultValue) continue;
    using K = ast::HyperParamType::Kind;
    switch (h.type.kind) {
    case K::Int: settings[h.name.text] = "3"; break;
    case K::Int2: settings[h.name.text] = "3,3"; break;
    case K::Float: settings[h.name.text] = "0.5"; break;
    case K::Bool: settings[h.name.text] = "true"; break;
    case K::Enum:
      if (!h.type.enumerators.empty()) settings[h.name.text] = h.type.enumerators.front().text;
      break;
    }
  }
  return settings;
}

void compileLayer(const Library &lib, const LayerSymbols &layer) {
  std::map<std::string, ir::Expr> hyper;
  try {
    hyper = resolveHyperParams(layer, smallSettings(layer));
  } catch (const Error &) {
    return; // a default that does not fit; the checker's business, not the compiler's
  }
  hyper["training"] = ir::boolImm(true);
  const LayerInstance instance = instantiateLayer(lib, layer, hyper);
  ir::Pipeline::Instrumentation instrumentation;
  instrumentation.verifyEach = true;
  const ir::Pipeline pipeline(instrumentation);
  for (bool distributed : {false, true}) {
    const ir::BuildOptions build{.fuse = true, .distributed = distributed};
    const ir::Program forward = pipeline.forward(*instance.symbols, hyper, build);
    std::map<std::string, ir::Expr> sizes;
    for (const ir::SizeParam &p : forward.sizes)
      if (p.kind == ir::VarKind::Size && !hyper.count(p.name)) sizes[p.name] = ir::intImm(3);
    pipeline.lower(pipeline.specializeSizes(forward, sizes),
                   {.target = ir::Target::CPU, .types = ir::forwardStorage(forward, ir::ElemType::F32)});
    const ir::Gradient g = pipeline.backward(*instance.symbols, forward, hyper, build);
    pipeline.lower(pipeline.specializeSizes(g.program, sizes),
                   {.target = ir::Target::CPU, .types = ir::backwardStorage(g, forward, ir::ElemType::F32)});
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string text(reinterpret_cast<const char *>(data), size);
  enc::fuzz::guarded(text, /*printInput=*/true, [&] {
    auto lib = Library::fromSource("fuzz.enc", text);
    // Each layer on its own: one layer's error does not hide the next one's crash.
    for (const std::string &name : lib->layerNames()) {
      try {
        compileLayer(*lib, lib->get(name));
      } catch (const enc::InternalError &) {
        throw;
      } catch (const Error &) {
      }
    }
  });
  return 0;
}
