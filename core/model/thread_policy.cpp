#include "core/model/thread_policy.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "core/base/thread_policy.h"

namespace ktl {

ThreadPools current_thread_pools() {
  ThreadPools p;
  p.torch_intra_op = at::get_num_threads();
  p.openmp = openmp_max_threads();  // LibTorch's OpenMP backend sets it with set_num_threads
  p.blas = blas_threads();
  p.cores = physical_cores();
  return p;
}

ThreadPools apply_thread_policy(int requested, int local_world_size) {
  const int n = resolve_threads(requested, local_world_size);
  torch::set_num_threads(n);
  set_blas_threads(n);
  return current_thread_pools();
}

std::string describe(const ThreadPools& p) {
  auto n = [](int v) { return v < 0 ? std::string("n/a") : std::to_string(v); };
  std::string s = "threads: LibTorch intra-op " + std::to_string(p.torch_intra_op) + ", OpenMP " +
                  n(p.openmp) + ", OpenBLAS ";
  s += n(p.blas);
  return s + " (" + std::to_string(p.cores) + " physical cores)";
}

}  // namespace ktl
