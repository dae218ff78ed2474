#include "core/base/kernel_ceiling.h"

#include <cstdlib>
#include <cstring>

namespace ktl {

namespace {

constexpr const char* kEnv = "KTL_KERNELS";

// The value of `--kernels` in argv, or nullptr.
const char* kernels_arg(int argc, char** argv) {
  constexpr const char* kFlag = "--kernels";
  const size_t len = std::strlen(kFlag);
  for (int i = 1; argv && i < argc && argv[i]; ++i) {
    if (std::strcmp(argv[i], kFlag) == 0) return i + 1 < argc ? argv[i + 1] : nullptr;
    if (std::strncmp(argv[i], kFlag, len) == 0 && argv[i][len] == '=') return argv[i] + len + 1;
  }
  return nullptr;
}

}  // namespace

std::optional<KernelCeiling> parse_kernel_ceiling(const std::string& s) {
  if (s == "auto") return KernelCeiling::kAuto;
  if (s == "avx512") return KernelCeiling::kAvx512;
  if (s == "avx2") return KernelCeiling::kAvx2;
  return std::nullopt;
}

const char* to_string(KernelCeiling c) {
  switch (c) {
    case KernelCeiling::kAuto:
      return "auto";
    case KernelCeiling::kAvx512:
      return "avx512";
    case KernelCeiling::kAvx2:
      return "avx2";
  }
  return "?";
}

KernelCeiling kernel_ceiling() {
  const char* v = std::getenv(kEnv);
  if (!v || !*v) return KernelCeiling::kAuto;
  return parse_kernel_ceiling(v).value_or(KernelCeiling::kAuto);
}

std::string kernel_ceiling_env_error() {
  const char* v = std::getenv(kEnv);
  if (!v || !*v || parse_kernel_ceiling(v)) return "";
  return std::string(kEnv) + "=" + v + " is not auto, avx512 or avx2";
}

CpuFeatures apply_kernel_ceiling(CpuFeatures f, KernelCeiling c) {
  if (c == KernelCeiling::kAuto) return f;
  f.amx = false;
  if (c == KernelCeiling::kAvx2) {
    f.avx512f = f.avx512bw = f.avx512vl = false;
    f.avx512_vnni = f.avx512_bf16 = false;
    f.avx_vnni = false;  // Alder Lake / Zen 5 have it; the AVX2-only CPUs do not
  }
  return f;
}

std::vector<std::pair<std::string, std::string>> library_isa_caps(KernelCeiling c) {
  switch (c) {
    case KernelCeiling::kAuto:
      return {};
    case KernelCeiling::kAvx512:
      return {{"DNNL_MAX_CPU_ISA", "AVX512_CORE_BF16"}, {"ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16"}};
    case KernelCeiling::kAvx2:
      return {{"ATEN_CPU_CAPABILITY", "avx2"},
              {"DNNL_MAX_CPU_ISA", "AVX2"},
              {"ONEDNN_MAX_CPU_ISA", "AVX2"}};
  }
  return {};
}

void prepare_kernel_ceiling_env(int argc, char** argv) {
  if (const char* v = kernels_arg(argc, argv); v && parse_kernel_ceiling(v)) setenv(kEnv, v, 1);
  for (const auto& [name, value] : library_isa_caps(kernel_ceiling()))
    setenv(name.c_str(), value.c_str(), /*overwrite=*/0);
}

}  // namespace ktl
