#include "compiler/KernelMerging.h"

#include <algorithm>
#include <utility>

namespace enc::ir {

KernelAccesses::KernelAccesses(const std::vector<Kernel> &ks) : reads_(ks.size()), writes_(ks.size()) {
  for (size_t i = 0; i < ks.size(); ++i) {
    reads_[i] = kernelReads(ks[i]);
    writes_[i] = kernelWrites(ks[i]);
    for (const std::string &b : reads_[i]) readers_[b].insert(i);
    for (const std::string &b : writes_[i]) writers_[b].insert(i);
  }
}

long KernelAccesses::lastBefore(const std::multiset<size_t> &positions, size_t j) {
  auto it = positions.lower_bound(j);
  return it == positions.begin() ? -1 : static_cast<long>(*std::prev(it));
}

long KernelAccesses::lastWriteOfReads(size_t j) const {
  long last = -1;
  for (const std::string &b : reads_[j])
    if (auto w = writers_.find(b); w != writers_.end()) last = std::max(last, lastBefore(w->second, j));
  return last;
}

long KernelAccesses::lastAccessOfWrites(size_t j) const {
  long last = -1;
  for (const std::string &b : writes_[j]) {
    if (auto w = writers_.find(b); w != writers_.end()) last = std::max(last, lastBefore(w->second, j));
    if (auto r = readers_.find(b); r != readers_.end()) last = std::max(last, lastBefore(r->second, j));
  }
  return last;
}

std::set<size_t> KernelAccesses::moved(size_t j, size_t i) {
  std::set<size_t> changed;
  auto move = [&](std::multiset<size_t> &positions) {
    positions.erase(positions.find(j));
    positions.insert(i);
  };
  for (const std::string &b : writes_[j]) {
    move(writers_[b]);
    changed.insert(readers_[b].begin(), readers_[b].end());
    changed.insert(writers_[b].begin(), writers_[b].end());
  }
  for (const std::string &b : reads_[j]) {
    move(readers_[b]);
    changed.insert(writers_[b].begin(), writers_[b].end());
  }
  return changed;
}

std::vector<Kernel> mergeIntoEarlier(std::vector<Kernel> ks, const MergeRules &rules) {
  const size_t n = ks.size();
  KernelAccesses accesses(ks);
  std::vector<std::optional<std::string>> kind(n);
  std::vector<long> earliest(n, 0);
  std::vector<bool> merged(n, false);
  // By kind, the kernels the sweep has not reached: those that may move up to the kernel it is
  // at, by position, and those that wait for a later one, by the first they may move up to.
  struct Queue {
    std::set<size_t> ready;
    std::set<std::pair<long, size_t>> waiting;
  };
  std::map<std::string, Queue> queues;
  size_t at = 0; // the kernel the sweep is at
  auto enqueue = [&](size_t k) {
    Queue &q = queues[*kind[k]];
    if (earliest[k] <= static_cast<long>(at)) q.ready.insert(k);
    else q.waiting.insert({earliest[k], k});
  };
  auto dequeue = [&](size_t k) {
    Queue &q = queues[*kind[k]];
    q.ready.erase(k);
    q.waiting.erase({earliest[k], k});
  };
  for (size_t j = 0; j < n; ++j) {
    kind[j] = rules.kindOf(ks[j]);
    if (!kind[j]) continue;
    earliest[j] = rules.earliest(accesses, j);
    enqueue(j);
  }
  for (; at < n; ++at) {
    const size_t i = at;
    if (merged[i] || !kind[i]) continue;
    Queue &q = queues[*kind[i]];
    dequeue(i);
    for (auto w = q.waiting.begin(); w != q.waiting.end() && w->first <= static_cast<long>(i); w = q.waiting.erase(w))
      q.ready.insert(w->second);
    std::unique_ptr<KernelMerge> merge;
    // In order: a merge may make a later kernel ready, never an earlier one.
    for (auto it = q.ready.begin(); it != q.ready.end();) {
      const size_t j = *it;
      if (!merge) merge = rules.start(ks[i]);
      if (merge->full()) break; // the kernels left would not join either
      if (!merge->join(ks[j])) {
        ++it;
        continue;
      }
      merged[j] = true;
      q.ready.erase(j);
      // What j touched counts at i now. A kernel after j that waited for j waits for i instead,
      // and if it is of i's kind and no other kernel stands in its way, it is ready for i too
      // (as it would be when met after j in a walk); one before j cannot become ready: the walk
      // has passed it.
      for (size_t k : accesses.moved(j, i)) {
        if (k <= i || merged[k] || !kind[k]) continue;
        dequeue(k);
        earliest[k] = rules.earliest(accesses, k);
        enqueue(k);
      }
      it = q.ready.upper_bound(j);
    }
    if (merge) ks[i] = merge->result();
  }
  std::vector<Kernel> out;
  for (size_t i = 0; i < n; ++i)
    if (!merged[i]) out.push_back(std::move(ks[i]));
  return out;
}

} // namespace enc::ir
