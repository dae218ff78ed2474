// Picking OpenBLAS's kernel set when OpenBLAS misreads the CPU.
//
// Debian's OpenBLAS 0.3.21 takes CPUs it does not know (Intel Emerald Rapids, family 6 model 207)
// for a `Prescott` and runs generic kernels: fp32 matmul 2-2.7x slower. OPENBLAS_CORETYPE is read
// when the library loads, so tune_runtime() sets it and re-executes the program: once to try the
// kernel the CPU allows (AVX2+FMA -> Haswell, AVX-512 F/BW/VL -> SkylakeX, + AVX512_BF16 ->
// Cooperlake), and once more without it if that kernel then fails an SGEMM check against a naive
// twin. A value the user set is never touched, nor a real core OpenBLAS chose itself unless it
// needs AVX-512 and the kernel ceiling (kernel_ceiling.h, `--kernels avx2`) forbids it: then
// Haswell, the same way.
//
// OpenBLAS is looked up with dlsym(RTLD_DEFAULT), so this builds and runs without it (macOS,
// reference BLAS): there it does nothing. Torch-free.
//
// Thread-safety: the pure functions are; prepare_blas_core_env() edits the environment and is
// called once from tune_runtime() before any thread starts.
#pragma once

#include <functional>
#include <string>

#include "core/base/cpu_features.h"

namespace ktl {

// True for the pre-AVX2 cores OpenBLAS falls back to (Prescott, Nehalem, Sandybridge, ...).
bool is_generic_blas_core(const std::string& core);
// True for OpenBLAS's AVX-512 cores (SkylakeX, Cooperlake, SapphireRapids).
bool is_avx512_blas_core(const std::string& core);
// The best kernel set the CPU allows: "Cooperlake", "SkylakeX", "Haswell" or "" (none better).
std::string best_blas_core_for(const CpuFeatures& cpu);

struct BlasCoreInputs {
  CpuFeatures cpu;
  std::string reported;  // openblas_get_corename(); "" when the BLAS is not OpenBLAS
  std::string user_env;  // OPENBLAS_CORETYPE as the user set it; "" when unset
  std::string rejected;  // why an earlier choice of ktl's failed its check; "" if none did
};
struct BlasCoreChoice {
  std::string core;  // the value to give OPENBLAS_CORETYPE; "" to leave it alone
  std::string reason;
};
// The decision, without side effects (unit-tested per branch).
BlasCoreChoice choose_blas_core(const BlasCoreInputs& in);

// Row-major C[m, n] = A[m, k] * B[k, n].
using SgemmFn = std::function<void(int m, int n, int k, const float* a, const float* b, float* c)>;
// Runs `sgemm` on a few shapes (kernel edges included) and compares with a naive triple loop.
// False with the first mismatch in `why`.
bool sgemm_agrees_with_naive(const SgemmFn& sgemm, std::string* why);
// cblas_sgemm from the loaded BLAS, or an empty function when none is loaded.
SgemmFn loaded_sgemm();

// Edits the environment for tune_runtime(): returns true when the program must re-execute itself
// for OpenBLAS to see the change (a core chosen, or a chosen one rejected by its check).
bool prepare_blas_core_env();

struct BlasStatus {
  std::string core;    // OpenBLAS's kernel set in use; "" when the BLAS is not OpenBLAS
  std::string config;  // openblas_get_config()
  bool chosen_by_ktl = false;
  std::string note;  // who chose it and why
};
BlasStatus blas_status();

}  // namespace ktl
