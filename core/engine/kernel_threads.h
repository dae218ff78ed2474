// How many threads ktl's own CPU kernels (int8/bf16 GEMV and GEMM, paged attention) really run
// on. The kernels (core/kernels/) split work through a parallel-for hook; the engine installs
// at::parallel_for there. at::parallel_for is a header template: with LibTorch's OpenMP backend
// its `#pragma omp parallel` is compiled into our code, so unless ktl_engine itself is built with
// OpenMP every one of those loops runs on the calling thread alone, whatever
// at::get_num_threads() says (ktl did, measured: oneDNN scaled to 2 threads, our kernels did not).
// The grain rule (parallel_grain, min_task_macs) lives with the hook in core/kernels/parallel.h.
//
// Thread-safety: install_kernel_parallel_for() from any thread (once, idempotent);
// kernel_parallel_threads() from the engine thread (it runs a parallel region).
#pragma once

#include "core/kernels/parallel.h"

namespace ktl {

// Makes core/kernels' parallel_for run on at::parallel_for. Cheap after the first call: every
// engine entry point into the kernels calls it (a static initializer here does too).
void install_kernel_parallel_for();

// Runs one at::parallel_for over enough items for every thread and counts the distinct threads
// that took part: at::get_num_threads() when the kernels are parallel, 1 when they are not.
int kernel_parallel_threads();

}  // namespace ktl
