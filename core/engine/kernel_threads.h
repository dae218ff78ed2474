// How many threads ktl's own CPU kernels (int8/bf16 GEMV and GEMM, paged attention) really run
// on. at::parallel_for is a header template: with LibTorch's OpenMP backend its
// `#pragma omp parallel` is compiled into our code, so unless ktl_engine itself is built with
// OpenMP every one of those loops runs on the calling thread alone, whatever
// at::get_num_threads() says (ktl did, measured: oneDNN scaled to 2 threads, our kernels did not).
//
// Thread-safety: call from the engine thread (it runs a parallel region).
#pragma once

#include <cstdint>

namespace ktl {

// Below this many multiply-adds a task is not worth a thread. With workers that spin briefly
// before sleeping (tune_runtime() sets GOMP_SPINCOUNT) a parallel region costs a few us, so even
// one decode row of model_small's smallest layer (590K MACs) splits. int8 1-stream decode, one
// run each (Intel Xeon, 2 threads): 64K 297 tok/s, 256K 263, 1M 245, 4M 129; 128K itself was
// not in that sweep (299 in a later llama.cpp comparison). Without the spin a wake-up cost ~100 us
// and splitting every layer was slower than none. KTL_MIN_TASK_MACS=N overrides it.
constexpr int64_t kMinTaskMacs = int64_t{1} << 17;
int64_t min_task_macs();  // kMinTaskMacs, or KTL_MIN_TASK_MACS

// The at::parallel_for grain for items of `macs_per_item` work each: at least `min_grain`, and
// enough items that a task does min_task_macs() (so small problems stay on the calling thread).
inline int64_t parallel_grain(int64_t macs_per_item, int64_t min_grain = 1) {
  const int64_t per = macs_per_item > 0 ? macs_per_item : 1;
  const int64_t g = (min_task_macs() + per - 1) / per;
  return g > min_grain ? g : min_grain;
}

// Runs one at::parallel_for over enough items for every thread and counts the distinct threads
// that took part: at::get_num_threads() when the kernels are parallel, 1 when they are not.
int kernel_parallel_threads();

}  // namespace ktl
