// The C++ runtime API of encc in one header: load .enc layers, create layer instances,
// run forward and backward passes, read and write .npy files, train with SGD.
//
//   auto lib = enc::Library::shipped();               // or Library::fromFile("my.enc")
//   enc::Layer conv(lib, "Conv2d", {{"in_channels", "3"}, {"out_channels", "8"}, {"kernel_size", "3"}});
//   auto y = conv.forward({{"X", x}}).at("Y");
//   auto grads = conv.backward({{"Y", dy}});           // "X", "weight", "bias"
//   // On the GPU: LayerOptions{.device = enc::Device::CUDA}; enc::cuda::Gpu::get() says if there is one.
//
// See docs/runtime.md.
#pragma once

#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/Npy.h"
#include "runtime/Optimizer.h"
#include "runtime/Safetensors.h"
#include "runtime/Tensor.h"
#include "support/Error.h"
