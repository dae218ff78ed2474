// The thread policy's arithmetic: 0 = every physical core, ranks on one machine split them.
#include "core/base/thread_policy.h"

#include <gtest/gtest.h>

#include <thread>

namespace ktl {
namespace {

TEST(ThreadPolicy, ZeroMeansEveryPhysicalCoreSharedByLocalRanks) {
  const int cores = physical_cores();
  EXPECT_GE(cores, 1);
  EXPECT_LE(cores, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_EQ(resolve_threads(0), cores);
  EXPECT_EQ(resolve_threads(3), 3);
  EXPECT_EQ(resolve_threads(0, 2), std::max(1, cores / 2));
  EXPECT_EQ(resolve_threads(0, 1000), 1);
  EXPECT_EQ(resolve_threads(5, 4), 5);  // an explicit count is never split
}

}  // namespace
}  // namespace ktl
