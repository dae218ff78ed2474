#include "core/engine/kernel_threads.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>

namespace ktl {

int64_t min_task_macs() {
  static const int64_t v = [] {
    const char* e = std::getenv("KTL_MIN_TASK_MACS");
    const long long n = e ? std::atoll(e) : 0;
    return n > 0 ? static_cast<int64_t>(n) : kMinTaskMacs;
  }();
  return v;
}

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
