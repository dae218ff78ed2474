// KTL_SIMD_CLONES: compile a function for AVX-512, AVX2 and baseline x86-64 and pick one when the
// program loads (GCC/Clang target_clones), so one binary runs fast on new CPUs and still runs on
// old ones. Empty on other architectures (ARM builds compile the plain function).
//
// Thread-safety: a macro; nothing to share.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KTL_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KTL_SIMD_CLONES
#endif
