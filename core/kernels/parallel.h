// How the torch-free kernels split work over threads: a parallel-for hook, serial until someone
// installs one. The engine installs at::parallel_for (core/engine/kernel_threads.h), so the
// kernels run on LibTorch's OpenMP pool there; the aarch64 test build and tools without LibTorch
// run them on the calling thread. Also the grain rule every kernel uses (min_task_macs()).
//
// Thread-safety: set_parallel_for_hook() is atomic (install it before the kernels run; the
// engine does it once); parallel_for() may be called from any thread.
#pragma once

#include <cstdint>

namespace ktl {

// body(ctx, begin, end) over a sub-range; ctx is the caller's callable.
using RangeFn = void (*)(const void* ctx, int64_t begin, int64_t end);
// Must call fn over disjoint ranges covering [begin, end), each at least `grain` long (the last
// may be shorter), and return when all are done; exceptions from fn propagate.
using ParallelForHook = void (*)(int64_t begin, int64_t end, int64_t grain, RangeFn fn,
                                 const void* ctx);

void set_parallel_for_hook(ParallelForHook hook);  // null: serial again
ParallelForHook parallel_for_hook();               // null when serial

// Runs fn over [begin, end) through the hook, or as one range on the calling thread.
void run_parallel_for(int64_t begin, int64_t end, int64_t grain, RangeFn fn, const void* ctx);

// f(begin, end) over sub-ranges of [begin, end), as at::parallel_for (no allocation).
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  run_parallel_for(
      begin, end, grain,
      [](const void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); }, &f);
}

// Below this many multiply-adds a task is not worth a thread. With workers that spin briefly
// before sleeping (tune_runtime() sets GOMP_SPINCOUNT) a parallel region costs a few us, so even
// one decode row of model_small's smallest layer (590K MACs) splits. int8 1-stream decode, one
// run each (Intel Xeon, 2 threads): 64K 297 tok/s, 256K 263, 1M 245, 4M 129; 128K itself was
// not in that sweep (299 in a later llama.cpp comparison). Without the spin a wake-up cost ~100 us
// and splitting every layer was slower than none. KTL_MIN_TASK_MACS=N overrides it.
constexpr int64_t kMinTaskMacs = int64_t{1} << 17;
int64_t min_task_macs();  // kMinTaskMacs, or KTL_MIN_TASK_MACS

// The parallel_for grain for items of `macs_per_item` work each: at least `min_grain`, and
// enough items that a task does min_task_macs() (so small problems stay on the calling thread).
inline int64_t parallel_grain(int64_t macs_per_item, int64_t min_grain = 1) {
  const int64_t per = macs_per_item > 0 ? macs_per_item : 1;
  const int64_t g = (min_task_macs() + per - 1) / per;
  return g > min_grain ? g : min_grain;
}

}  // namespace ktl
