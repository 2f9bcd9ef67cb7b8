// Reading and writing NumPy .npy files, as specified in
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html. Only what a Tensor can hold is
// supported: little-endian float16/float32/float64 in C order. Every problem with a file is reported as an
// enc::Error whose message starts with the file's name.
#pragma once

#include "runtime/Tensor.h"

#include <string>
#include <string_view>

namespace enc {

// Reads a .npy file (format versions 1.0, 2.0 and 3.0) holding '<f2', '<f4' or '<f8' data in C order, as an
// F16, F32 or F64 tensor. Fortran order is accepted only where it is byte-for-byte the same as C order (at
// most one dimension larger than 1).
Tensor readNpy(const std::string &path);

// Parses a whole .npy file held in memory; `name` (normally the file path) prefixes error messages.
Tensor parseNpy(std::string_view bytes, const std::string &name);

// Writes format version 1.0 (2.0 if the header does not fit), '<f2', '<f4' or '<f8', fortran_order False.
// NumPy has no bfloat16, so a BF16 tensor is written as '<f4' (an exact widening) and reads back as F32.
// The data goes to a temporary file in the same directory that is then renamed over `path`, so a concurrent
// reader sees either the old file or the complete new one.
void writeNpy(const std::string &path, const Tensor &t);

// The exact bytes writeNpy writes.
std::string serializeNpy(const Tensor &t);

} // namespace enc
