// Process-wide tuning that must happen before any heavy work. Call once, first thing in main().
#pragma once

namespace ktl {

// Keeps glibc malloc from returning big blocks to the OS (re-faulting them cost 30-40% of CPU
// time in training here), and makes OpenMP threads wait passively so they do not spin against
// OpenBLAS's threads, after a short spin (GOMP_SPINCOUNT=3000) that keeps them awake between
// the engine's many small parallel regions. Both are read when libgomp loads, so when either is
// unset this re-executes the program once with it set (argv is needed; pass null to skip).
// The same re-execution gives OpenBLAS a real kernel set when it misreads the CPU
// (core/base/blas_tuning.h). `--kernels X` in argv or KTL_KERNELS caps every kernel's instruction
// set first (core/base/kernel_ceiling.h).
// No-op where these do not apply (macOS).
void tune_runtime(int argc = 0, char** argv = nullptr);

// Hands the pages of freed heap memory back to the OS once (malloc_trim): with the settings above
// glibc keeps them, so memory freed after loading (an fp32 copy replaced by a smaller one) would
// count in RSS until reused. Later allocations fault the pages back in as they touch them.
// No-op outside glibc. Thread-safe (malloc's own locking).
void release_free_heap();

}  // namespace ktl
