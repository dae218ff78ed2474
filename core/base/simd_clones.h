// KTL_SIMD_CLONES: compile a function for AVX-512, AVX2 and baseline x86-64 and pick one when the
// program loads (GCC/Clang target_clones), so one binary runs fast on new CPUs and still runs on
// old ones. Empty on other architectures (ARM builds compile the plain function).
//
// Thread-safety: a macro; nothing to share.
#pragma once

// ThreadSanitizer builds (make tsan) get the plain function: a clone is chosen by an ifunc
// resolver that the dynamic loader runs before the sanitizer's runtime has started, and the
// instrumented resolver crashes the program there.
#if defined(__SANITIZE_THREAD__)
#define KTL_NO_SIMD_CLONES 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KTL_NO_SIMD_CLONES 1
#endif
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(KTL_NO_SIMD_CLONES)
#define KTL_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KTL_SIMD_CLONES
#endif
