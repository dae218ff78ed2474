#include "cli/kernels_flag.h"

#include <ATen/Context.h>

#include <cstdio>
#include <cstdlib>

#include "core/base/cpu_features.h"
#include "core/base/kernel_ceiling.h"
#include "core/base/simd_clones.h"

namespace ktl::cli {

namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

}  // namespace

Flag kernels_flag() {
  return {"kernels",
          "auto | avx512 | avx2: the widest instruction set ktl's kernels, LibTorch, oneDNN and "
          "OpenBLAS may use (avx2: what an AVX2-only CPU runs; also KTL_KERNELS)",
          "auto"};
}

void check_kernels_flag(const Args& args) {
  if (args.has("kernels") && !parse_kernel_ceiling(args.get("kernels")))
    throw UsageError("--kernels must be auto, avx512 or avx2");
  if (const std::string err = kernel_ceiling_env_error(); !err.empty()) throw UsageError(err);
  const KernelCeiling c = kernel_ceiling();
  // ATen sends bf16 matmuls to oneDNN when cpuinfo (not the cap) shows AVX-512, and oneDNN capped
  // at AVX2 has no bf16 matmul: off, as on an AVX2-only CPU (ATen's own bf16 GEMM then).
  if (c == KernelCeiling::kAvx2 && detect_native_cpu_features().avx512f)
    at::globalContext().setUserEnabledMkldnn(false);
  // On stderr: stdout may be bench --json's lines.
  if (c != KernelCeiling::kAuto)
    std::fprintf(stderr, "ktl: kernels capped at %s: CPU features in use %s (of %s)\n",
                 to_string(c), cpu_feature_list(detect_cpu_features()).c_str(),
                 cpu_feature_list(detect_native_cpu_features()).c_str());
}

nlohmann::json kernels_json() {
  nlohmann::json j;
  j["ceiling"] = to_string(kernel_ceiling());
  j["simd"] = to_string(simd_level());  // GEMV, attention, quantizer copies
  j["cpu_features_native"] = cpu_feature_list(detect_native_cpu_features());
  j["aten_cpu_capability"] = env_or("ATEN_CPU_CAPABILITY", "auto");
  j["dnnl_max_cpu_isa"] = env_or("DNNL_MAX_CPU_ISA", "auto");
  return j;
}

}  // namespace ktl::cli
