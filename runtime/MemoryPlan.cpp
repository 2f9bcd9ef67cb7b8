#include "runtime/MemoryPlan.h"

#include "runtime/Layer.h"

#include <algorithm>

namespace enc {

MemoryPlan planMemory(const ir::LoopProgram &loops, const std::map<std::string, Shape> &shapes,
                      const std::set<std::string> &given, const std::set<std::string> &keep) {
  MemoryPlan plan;
  std::map<std::string, size_t> index; // tensor -> its slot
  for (size_t k = 0; k < loops.kernels.size(); ++k)
    for (const std::string &b : loops.kernels[k].buffers) {
      if (given.count(b) || keep.count(b) || !shapes.count(b)) continue;
      auto [it, fresh] = index.emplace(b, plan.slots.size());
      if (fresh) {
        size_t bytes = static_cast<size_t>(shapeNumel(shapes.at(b))) * dtypeSize(dtypeOf(loops.types.of(b)));
        plan.slots.push_back({b, 0, (bytes + 63) / 64 * 64, k, k});
        plan.unplannedBytes += plan.slots.back().bytes;
      }
      plan.slots[it->second].last = k;
    }
  // Largest first, each at the lowest offset free of every placed slot whose lifetime overlaps.
  std::vector<size_t> order(plan.slots.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return plan.slots[a].bytes > plan.slots[b].bytes; });
  std::vector<size_t> placed;
  for (size_t i : order) {
    MemoryPlan::Slot &s = plan.slots[i];
    std::vector<std::pair<size_t, size_t>> busy; // [begin, end) taken by overlapping lifetimes
    for (size_t j : placed) {
      const MemoryPlan::Slot &o = plan.slots[j];
      if (o.first <= s.last && s.first <= o.last) busy.push_back({o.offset, o.offset + o.bytes});
    }
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;
    for (const auto &[begin, end] : busy) {
      if (offset + s.bytes <= begin) break;
      offset = std::max(offset, end);
    }
    s.offset = offset;
    plan.arenaBytes = std::max(plan.arenaBytes, offset + s.bytes);
    placed.push_back(i);
  }
  return plan;
}

} // namespace enc
