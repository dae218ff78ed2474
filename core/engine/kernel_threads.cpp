#include "core/engine/kernel_threads.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

namespace ktl {

namespace {

void at_parallel_for(int64_t begin, int64_t end, int64_t grain, RangeFn fn, const void* ctx) {
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) { fn(ctx, b, e); });
}

[[maybe_unused]] const bool g_installed_at_load = (install_kernel_parallel_for(), true);

}  // namespace

void install_kernel_parallel_for() {
  static const bool once = (set_parallel_for_hook(at_parallel_for), true);
  (void)once;
}

int kernel_parallel_threads() {
  install_kernel_parallel_for();
  constexpr int kMaxThreads = 256;
  std::atomic<bool> seen[kMaxThreads] = {};
  const int64_t items = 64 * static_cast<int64_t>(at::get_num_threads());
  // Through the kernels' hook: what counts is where the kernels' loops run.
  parallel_for(0, items, 1, [&](int64_t, int64_t) {
    const int t = at::get_thread_num();
    if (t >= 0 && t < kMaxThreads) seen[t].store(true);
  });
  int n = 0;
  for (const auto& s : seen) n += s.load();
  return n;
}

}  // namespace ktl
