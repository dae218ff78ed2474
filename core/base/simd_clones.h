// Portable SIMD by function copies: a function is compiled for AVX-512, AVX2 and baseline x86-64
// and one copy is picked at run time, so one binary runs fast on new CPUs and still runs on old
// ones. Empty on other architectures (ARM builds compile the plain function).
//
//   KTL_SIMD_BODY void f_body(...) { ... }         // the portable loop, always inlined
//   KTL_SIMD_DISPATCH(void, f, (params...), (args...))
//
// defines f_avx512 / f_avx2 / f_default (the body compiled for each) and f itself, which calls
// the copy simd_level() names: detect_cpu_features(), so the kernel ceiling (`--kernels avx2`,
// kernel_ceiling.h) applies. (GCC's target_clones did the same, but its ifunc resolver reads
// cpuid when the program loads and cannot be capped.)
//
// Thread-safety: simd_level() is computed once (a function-local static); the rest are macros.
#pragma once

#include "core/base/cpu_features.h"

namespace ktl {

enum class SimdLevel { kDefault, kAvx2, kAvx512 };

inline SimdLevel simd_level() {
  static const SimdLevel level = [] {
    const CpuFeatures f = detect_cpu_features();
    return f.avx512f ? SimdLevel::kAvx512 : f.avx2 ? SimdLevel::kAvx2 : SimdLevel::kDefault;
  }();
  return level;
}

inline const char* to_string(SimdLevel l) {
  return l == SimdLevel::kAvx512 ? "avx512" : l == SimdLevel::kAvx2 ? "avx2" : "default";
}

}  // namespace ktl

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KTL_SIMD_BODY __attribute__((always_inline)) inline
#define KTL_SIMD_DISPATCH(ret, name, params, args)                     \
  __attribute__((target("avx512f"))) ret name##_avx512 params {        \
    return name##_body args;                                           \
  }                                                                    \
  __attribute__((target("avx2"))) ret name##_avx2 params {             \
    return name##_body args;                                           \
  }                                                                    \
  ret name##_default params {                                          \
    return name##_body args;                                           \
  }                                                                    \
  ret name params {                                                    \
    static const ::ktl::SimdLevel level = ::ktl::simd_level();         \
    if (level == ::ktl::SimdLevel::kAvx512) return name##_avx512 args; \
    if (level == ::ktl::SimdLevel::kAvx2) return name##_avx2 args;     \
    return name##_default args;                                        \
  }
#else
#define KTL_SIMD_BODY inline
#define KTL_SIMD_DISPATCH(ret, name, params, args) \
  ret name params {                                \
    return name##_body args;                       \
  }
#endif
