// What the CPU can run, read from cpuid (x86) and checked against what the OS saves on a context
// switch (XGETBV): an AVX-512 CPU under an OS that does not save ZMM state reports no AVX-512.
// On AArch64 the dot-product and int8 matrix-multiply extensions come from the OS (HWCAPs on
// Linux, sysctl on macOS); on other architectures every flag is false. detect_cpu_features() is
// what ktl's kernels may use: the CPU under the process's kernel ceiling (kernel_ceiling.h,
// `--kernels avx2`).
//
// Thread-safety: free functions; detect_cpu_features() may be called from any thread.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace ktl {

struct CpuFeatures {
  std::string vendor;         // "GenuineIntel", "AuthenticAMD", "" when not x86
  int family = 0, model = 0;  // display family / model (Emerald Rapids: 6 / 207)
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512vl = false;
  bool avx512_vnni = false, avx_vnni = false, avx512_bf16 = false;
  bool amx = false;  // AMX tiles usable (AMX-TILE + OS support)
  // AArch64 (Linux: getauxval HWCAP_ASIMDDP / HWCAP2_I8MM; macOS: sysctl hw.optional.arm.FEAT_*):
  bool neon_dot = false;  // sdot/udot (ARMv8.2-A dotprod; every Apple M-series CPU)
  bool i8mm = false;      // smmla (ARMv8.6-A int8 matrix multiply; Apple M2 on)
};

CpuFeatures detect_cpu_features();         // masked by kernel_ceiling()
CpuFeatures detect_native_cpu_features();  // the CPU as it is
// Every flag by name (avx2, fma, avx512f, avx512bw, avx512vl, avx512_vnni, avx_vnni,
// avx512_bf16, amx, asimddp, i8mm), in that order.
std::vector<std::pair<std::string, bool>> cpu_feature_flags(const CpuFeatures& f);
// "avx2 fma avx512f ...": the names of the flags that are set; "none" when none is.
std::string cpu_feature_list(const CpuFeatures& f);

}  // namespace ktl
