// ktl's own kernels run on the threads asked for: at::parallel_for compiled into ktl_engine is
// really parallel (it ran serially while ktl_engine was built without OpenMP).
#include "core/engine/kernel_threads.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <thread>

namespace ktl {
namespace {

TEST(KernelThreads, OurParallelForRunsOnTheThreadsAskedFor) {
#if !defined(KTL_ENGINE_OPENMP) && defined(__APPLE__)
  // Apple clang ships no OpenMP: the kernels stay serial there. Elsewhere a build without it is
  // the bug this test is for, and fails below.
  GTEST_SKIP() << "ktl_engine was built without OpenMP (Apple clang): its kernels run serially";
#else
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "one core";
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  EXPECT_EQ(kernel_parallel_threads(), 2);
  at::set_num_threads(1);
  EXPECT_EQ(kernel_parallel_threads(), 1);
  at::set_num_threads(before);
#endif
}

}  // namespace
}  // namespace ktl
