// The C++ runtime API of encc in one header: load .enc layers, create layer instances,
// run forward and backward passes, read and write .npy files, train with SGD, Adam or AdamW
// under a learning-rate schedule, and compute on tensors without element loops.
//
//   auto lib = enc::Library::shipped();               // or Library::fromFile("my.enc")
//   enc::Layer conv(lib, "Conv2d", {{"in_channels", "3"}, {"out_channels", "8"}, {"kernel_size", "3"}});
//   auto y = conv.forward({{"X", x}}).at("Y");
//   auto grads = conv.backward({{"Y", dy}});           // "X", "weight", "bias"
//   // On the GPU: LayerOptions{.device = enc::Device::CUDA}; enc::cuda::Gpu::get() says if there is one.
//
//   enc::AdamW opt({.lr = 1e-3});                      // or enc::SGD, enc::Adam
//   enc::CosineAnnealingLR schedule(opt, /*tMax=*/epochs);
//   for (int epoch = 0; epoch < epochs; ++epoch) {
//     auto x = enc::normal({32, 3, 16, 16}, 0, 1, /*seed=*/epoch);
//     auto y = conv.forward({{"X", x}}).at("Y");
//     double loss = enc::mean(enc::mul(y, y));          // also add, sub, sum, argmax, fromHost, toVector
//     opt.step(conv, conv.backward({{"Y", enc::scale(y, 2.0 / y.numel())}}));  // d loss / dy
//     schedule.step();
//   }
//
// See docs/runtime.md.
#pragma once

#include "runtime/Adam.h"
#include "runtime/Gpu.h"
#include "runtime/Layer.h"
#include "runtime/Library.h"
#include "runtime/LrScheduler.h"
#include "runtime/Npy.h"
#include "runtime/Optimizer.h"
#include "runtime/Safetensors.h"
#include "runtime/Tensor.h"
#include "runtime/TensorOps.h"
#include "support/Error.h"
