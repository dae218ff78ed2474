#include "core/base/thread_policy.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif
#include "core/base/dynamic_symbol.h"

namespace ktl {

int physical_cores() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    // One core per distinct sibling list: "0,64" or "0-1" names a core's logical CPUs.
    std::set<std::string> cores;
    int logical = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      ++logical;
      std::ifstream f("/sys/devices/system/cpu/cpu" + std::to_string(cpu) +
                      "/topology/thread_siblings_list");
      std::string siblings;
      if (!(f >> siblings)) {
        cores.clear();
        break;
      }
      cores.insert(siblings);
    }
    if (!cores.empty()) return static_cast<int>(cores.size());
    if (logical > 0) return logical;
  }
#endif
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

int resolve_threads(int requested, int local_world_size) {
  if (requested > 0) return requested;
  return std::max(1, physical_cores() / std::max(1, local_world_size));
}

void set_blas_threads(int n) {
  // A count the user set for OpenBLAS itself wins.
  if (std::getenv("OPENBLAS_NUM_THREADS") || std::getenv("GOTO_NUM_THREADS")) return;
  if (auto fn = find_symbol<void (*)(int)>("openblas_set_num_threads")) fn(n);
}

int openmp_max_threads() {
  auto fn = find_symbol<int (*)()>("omp_get_max_threads");
  return fn ? fn() : -1;
}

int blas_threads() {
  auto fn = find_symbol<int (*)()>("openblas_get_num_threads");
  return fn ? fn() : -1;
}

}  // namespace ktl
