#include "core/engine/kernel_threads.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

namespace ktl {

int kernel_parallel_threads() {
  constexpr int kMaxThreads = 256;
  std::atomic<bool> seen[kMaxThreads] = {};
  const int64_t items = 64 * static_cast<int64_t>(at::get_num_threads());
  at::parallel_for(0, items, 1, [&](int64_t, int64_t) {
    const int t = at::get_thread_num();
    if (t >= 0 && t < kMaxThreads) seen[t].store(true);
  });
  int n = 0;
  for (const auto& s : seen) n += s.load();
  return n;
}

}  // namespace ktl
