#include "core/base/runtime_tuning.h"

#include <cstdlib>

#include "core/base/blas_tuning.h"
#include "core/base/kernel_ceiling.h"

#if defined(__linux__)
#include <malloc.h>
#include <unistd.h>
#endif

namespace ktl {

void tune_runtime(int argc, char** argv) {
#if defined(__linux__) && defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  // First: the ceiling masks the CPU features the OpenBLAS choice below reads.
  prepare_kernel_ceiling_env(argc, argv);
  if (!argv) return;
  // Both variables are read when their library loads: one re-execution applies them.
  bool reexec = false;
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    reexec = true;
  }
  // A short spin before sleeping (it overrides PASSIVE's 0): the engine's kernels open dozens of
  // parallel regions per decode step, and waking a sleeping worker for each cost ~100 us
  // (int8 1-stream decode: 275 tok/s with 30000; without, 148 at the best grain, 98 at the same
  // one). 3000, not 30000: the longer spin fought OpenBLAS's threads after an fp32 prefill
  // (512-token prompt, model_small, 2 threads, AMD EPYC Zen 4: fp32 prefill 420-861 -> 815-967
  // tok/s, the decode after it 38-43 -> 56-62), while short-context decode and training
  // measured the same within noise.
  if (!std::getenv("GOMP_SPINCOUNT")) {
    setenv("GOMP_SPINCOUNT", "3000", 1);
    reexec = true;
  }
  if (prepare_blas_core_env()) reexec = true;
  if (reexec) execv("/proc/self/exe", argv);  // returns only on failure: carry on untuned
#else
  (void)argc;
  (void)argv;
#endif
}

void release_free_heap() {
#if defined(__linux__) && defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace ktl
