// The kernels' parallel-for: serial on the calling thread until a hook is installed, then every
// range goes through the hook, and the grain rule.
#include "core/kernels/parallel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace ktl {
namespace {

std::vector<std::pair<int64_t, int64_t>> g_seen;
int64_t g_grain = 0;

// A hook that splits into ranges of `grain` and records what it was given.
void splitting_hook(int64_t begin, int64_t end, int64_t grain, RangeFn fn, const void* ctx) {
  g_grain = grain;
  for (int64_t b = begin; b < end; b += grain) fn(ctx, b, std::min(end, b + grain));
}

TEST(KernelParallelFor, SerialByDefaultAndThroughTheHookOnceInstalled) {
  const ParallelForHook before = parallel_for_hook();
  set_parallel_for_hook(nullptr);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  parallel_for(3, 10, 2, [&](int64_t b, int64_t e) { ranges.emplace_back(b, e); });
  EXPECT_EQ(ranges, (std::vector<std::pair<int64_t, int64_t>>{{3, 10}}));
  ranges.clear();
  parallel_for(5, 5, 1, [&](int64_t b, int64_t e) { ranges.emplace_back(b, e); });
  EXPECT_TRUE(ranges.empty());  // an empty range runs nothing

  set_parallel_for_hook(splitting_hook);
  std::vector<int> hits(10, 0);
  parallel_for(3, 10, 3, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) ++hits[i];
  });
  EXPECT_EQ(g_grain, 3);
  EXPECT_EQ(hits, (std::vector<int>{0, 0, 0, 1, 1, 1, 1, 1, 1, 1}));
  set_parallel_for_hook(before);
}

TEST(KernelParallelFor, GrainGivesEachTaskEnoughWork) {
  EXPECT_EQ(parallel_grain(min_task_macs(), 1), 1);
  EXPECT_EQ(parallel_grain(1, 1), min_task_macs());
  EXPECT_EQ(parallel_grain(min_task_macs(), 64), 64);
  EXPECT_EQ(parallel_grain(0, 1), min_task_macs());  // no work per item: counted as 1
}

}  // namespace
}  // namespace ktl
