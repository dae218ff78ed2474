// The widest instruction set ktl's kernels and its libraries may use in this process
// (`--kernels auto|avx512|avx2` or KTL_KERNELS), so one machine can run what an AVX2-only CPU
// (laptops before 2021, AMD Zen 2/3) runs.
//
// detect_cpu_features() reports the CPU masked by the ceiling, so every run-time choice made from
// it follows: the int8 and bf16/fp32 GEMV kernels, paged attention and the other explicit
// dispatches (KTL_SIMD_DISPATCH, simd_clones.h), the quantizer, OpenBLAS's kernel set
// (blas_tuning.h picks Haswell when OpenBLAS itself took an AVX-512 one). LibTorch's own kernels
// are capped through the variables they read once, at their first use: ATEN_CPU_CAPABILITY (ATen)
// and DNNL_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA (oneDNN); prepare_kernel_ceiling_env() sets those the
// user left unset, before any of them runs.
//
//   avx2:   no AVX-512 (F/BW/VL/VNNI/BF16), no AVX-VNNI, no AMX: a Haswell-level x86 CPU.
//   avx512: no AMX (AVX-512 and its VNNI/BF16 stay).
//   auto:   the CPU as it is.
//
// What stays native: code in other libraries that reads cpuid itself (glibc's memcpy and string
// functions). ktl's own copies all go through KTL_SIMD_DISPATCH (simd_clones.h).
//
// Thread-safety: the pure functions are; kernel_ceiling() reads the environment on each call, so
// it must be set (main: tune_runtime) before another thread starts or any kernel is chosen.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/base/cpu_features.h"

namespace ktl {

enum class KernelCeiling { kAuto, kAvx512, kAvx2 };

// "auto" | "avx512" | "avx2"; nullopt for anything else.
std::optional<KernelCeiling> parse_kernel_ceiling(const std::string& s);
const char* to_string(KernelCeiling c);

// KTL_KERNELS (auto when unset or not a valid name; kernel_ceiling_env_error() says which).
KernelCeiling kernel_ceiling();
// "" when KTL_KERNELS is unset or valid, else a message naming the bad value.
std::string kernel_ceiling_env_error();

// f without what the ceiling forbids (pure).
CpuFeatures apply_kernel_ceiling(CpuFeatures f, KernelCeiling c);

// The libraries' own variables for a ceiling, as (name, value): empty for auto.
std::vector<std::pair<std::string, std::string>> library_isa_caps(KernelCeiling c);

// For tune_runtime(), before any thread or kernel: `--kernels X` / `--kernels=X` in argv (a valid
// X) becomes KTL_KERNELS, then library_isa_caps() of the ceiling are set where unset.
void prepare_kernel_ceiling_env(int argc, char** argv);

}  // namespace ktl
