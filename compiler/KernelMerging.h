// The sweep that the horizontal fusions of loop IR share (FuseSiblingReductions.cpp,
// FusePointwiseKernels.cpp): each kernel in order takes in every later kernel of its kind that
// may move up to it, in order, as far as the pass's merge agrees.
//
// Whether kernel j may move up to kernel i depends on the kernels between them: j may not read
// what one of them writes, and (for the pointwise fusion) not write what one of them reads or
// writes. Asking that by walking the kernels between costs the whole program per kernel, which a
// network of thousands of layers cannot afford. Here each buffer knows the positions of the
// kernels that read and write it instead (a kernel merged into another counts at that one's
// position from then on), so "the last kernel before j that conflicts with it" is a few lookups,
// and each kernel waits, with its kind, for the first kernel after that one.
#pragma once

#include "compiler/LoopIR.h"

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace enc::ir {

// Where each buffer is read and written, by position in a list of kernels.
class KernelAccesses {
public:
  explicit KernelAccesses(const std::vector<Kernel> &ks);

  // The last position before j of a kernel that writes what kernel j reads; -1 if none.
  long lastWriteOfReads(size_t j) const;
  // The last position before j of a kernel that reads or writes what kernel j writes; -1 if none.
  long lastAccessOfWrites(size_t j) const;
  // Kernel j has been merged into kernel i: what j read and wrote counts at i from now on.
  // Returns the kernels whose answers above may have changed.
  std::set<size_t> moved(size_t j, size_t i);

private:
  std::vector<std::set<std::string>> reads_, writes_; // by kernel, as first given
  std::map<std::string, std::multiset<size_t>> readers_, writers_;

  static long lastBefore(const std::multiset<size_t> &positions, size_t j);
};

// A kernel that later kernels merge into, one after another.
class KernelMerge {
public:
  virtual ~KernelMerge() = default;
  // Merges `b` in, or returns false and changes nothing.
  virtual bool join(const Kernel &b) = 0;
  // Whether no kernel would join any more.
  virtual bool full() const { return false; }
  virtual Kernel result() const = 0;
};

struct MergeRules {
  // The kernel's kind: only kernels of one kind merge (a domain, a loop nest). nullopt: never.
  std::function<std::optional<std::string>(const Kernel &)> kindOf;
  // The first position from which kernel j may move up to a kernel: a kernel before it stands
  // in the way.
  std::function<long(const KernelAccesses &, size_t j)> earliest;
  // A merge that starts from kernel a.
  std::function<std::unique_ptr<KernelMerge>(const Kernel &a)> start;
};

// For each kernel i in order that has a kind: every later kernel j of that kind with
// earliest(j) <= i, in order, joins it where it agrees, and leaves the list. The same merges as
// walking every later kernel for each i and keeping track of what the kernels passed over read
// and write, when `earliest` states that rule.
std::vector<Kernel> mergeIntoEarlier(std::vector<Kernel> ks, const MergeRules &rules);

} // namespace enc::ir
