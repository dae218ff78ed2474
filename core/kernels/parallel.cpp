#include "core/kernels/parallel.h"

#include <atomic>
#include <cstdlib>

namespace ktl {

namespace {
std::atomic<ParallelForHook> g_hook{nullptr};
}  // namespace

void set_parallel_for_hook(ParallelForHook hook) {
  g_hook.store(hook, std::memory_order_release);
}

ParallelForHook parallel_for_hook() {
  return g_hook.load(std::memory_order_acquire);
}

void run_parallel_for(int64_t begin, int64_t end, int64_t grain, RangeFn fn, const void* ctx) {
  if (begin >= end) return;
  if (const ParallelForHook hook = parallel_for_hook())
    hook(begin, end, grain, fn, ctx);
  else
    fn(ctx, begin, end);
}

int64_t min_task_macs() {
  static const int64_t v = [] {
    const char* e = std::getenv("KTL_MIN_TASK_MACS");
    const long long n = e ? std::atoll(e) : 0;
    return n > 0 ? static_cast<int64_t>(n) : kMinTaskMacs;
  }();
  return v;
}

}  // namespace ktl
