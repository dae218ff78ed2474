// One thread policy for every command that runs LibTorch (train, sft, dpo, eval, sweep, serve,
// bench): 0 threads means every core, physical where the machine says which logical CPUs are
// hyper-thread siblings, and ranks on one machine split them. Three pools are sized together,
// because each starts its own threads: LibTorch's intra-op pool (OpenMP here), OpenBLAS's (the
// pthreads build starts its own), and the OpenMP default for code outside LibTorch. They do not
// run at once: LibTorch calls BLAS from its calling thread and its OpenMP workers wait passively
// meanwhile (OMP_WAIT_POLICY, core/base/runtime_tuning.h), so equal sizes do not oversubscribe
// (measured in docs/training-guide.md, "Threads").
//
// Thread-safety: call from the main thread before the work starts; the queries are read-only.
#pragma once

#include <string>

namespace ktl {

// Physical cores this process may run on (its CPU affinity, hyper-thread siblings counted
// once); the logical count where the topology is unknown; at least 1.
int physical_cores();

// `requested` > 0: itself; 0: physical_cores() / local_world_size (at least 1).
int resolve_threads(int requested, int local_world_size = 1);

// OpenBLAS's thread count: set (no-op when the BLAS is not OpenBLAS, or when the user set
// OPENBLAS_NUM_THREADS) and read (-1 when not OpenBLAS).
void set_blas_threads(int n);
int blas_threads();
// OpenMP's default team size for the calling thread; -1 when no OpenMP runtime is loaded.
int openmp_max_threads();

}  // namespace ktl
