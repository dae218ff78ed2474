// Applies the thread policy (core/base/thread_policy.h) to LibTorch and OpenBLAS, and names
// the pools for the log line every command prints.
//
// Thread-safety: LibTorch's thread count is per calling thread for OpenMP (a worker thread that
// runs the model calls torch::set_num_threads itself); call this from the thread that will run.
#pragma once

#include <string>

namespace ktl {

struct ThreadPools {
  int torch_intra_op = 0;  // LibTorch (at::get_num_threads)
  int openmp = -1;         // OpenMP's default for this thread (LibTorch's pool); -1: no OpenMP
  int blas = -1;           // OpenBLAS's; -1 when the BLAS is not OpenBLAS
  int cores = 0;           // physical cores seen
};

// Sizes LibTorch's intra-op pool and OpenBLAS to resolve_threads(requested, local_world_size).
ThreadPools apply_thread_policy(int requested, int local_world_size = 1);
ThreadPools current_thread_pools();

// "threads: LibTorch intra-op 2, OpenMP 2, OpenBLAS 2 (2 physical cores)".
std::string describe(const ThreadPools& p);

}  // namespace ktl
