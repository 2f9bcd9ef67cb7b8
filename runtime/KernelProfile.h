// ENC_PROFILE=1: the wall time of every kernel a layer runs, summed per kernel and printed to
// standard error when the process exits, slowest first. On the GPU each kernel is waited for,
// so the figures attribute time correctly but the passes themselves run slower.
#pragma once

#include <string>

namespace enc {

bool kernelProfiling();
// `kernel` names it for the report: "Conv2d k2_grad_X (conv.enc:17)".
void recordKernelTime(const std::string &kernel, double seconds);

} // namespace enc
