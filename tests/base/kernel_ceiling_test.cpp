// The kernel ceiling: parsing, what each level masks, the libraries' variables, and that
// detect_cpu_features() and simd dispatch follow KTL_KERNELS.
#include "core/base/kernel_ceiling.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/base/simd_clones.h"

namespace ktl {
namespace {

CpuFeatures everything() {
  CpuFeatures f;
  f.avx2 = f.fma = f.avx512f = f.avx512bw = f.avx512vl = true;
  f.avx512_vnni = f.avx_vnni = f.avx512_bf16 = f.amx = true;
  return f;
}

// Sets KTL_KERNELS for one scope, restoring what was there.
class ScopedKernelsEnv {
 public:
  explicit ScopedKernelsEnv(const char* value) {
    if (const char* v = std::getenv("KTL_KERNELS")) old_ = v, had_ = true;
    if (value)
      setenv("KTL_KERNELS", value, 1);
    else
      unsetenv("KTL_KERNELS");
  }
  ~ScopedKernelsEnv() {
    if (had_)
      setenv("KTL_KERNELS", old_.c_str(), 1);
    else
      unsetenv("KTL_KERNELS");
  }

 private:
  std::string old_;
  bool had_ = false;
};

TEST(KernelCeiling, ParsesTheThreeNames) {
  EXPECT_EQ(parse_kernel_ceiling("auto"), KernelCeiling::kAuto);
  EXPECT_EQ(parse_kernel_ceiling("avx512"), KernelCeiling::kAvx512);
  EXPECT_EQ(parse_kernel_ceiling("avx2"), KernelCeiling::kAvx2);
  EXPECT_FALSE(parse_kernel_ceiling("AVX2"));
  EXPECT_FALSE(parse_kernel_ceiling("sse"));
  EXPECT_FALSE(parse_kernel_ceiling(""));
  for (auto c : {KernelCeiling::kAuto, KernelCeiling::kAvx512, KernelCeiling::kAvx2})
    EXPECT_EQ(parse_kernel_ceiling(to_string(c)), c);
}

TEST(KernelCeiling, Avx2LeavesAHaswell) {
  const CpuFeatures f = apply_kernel_ceiling(everything(), KernelCeiling::kAvx2);
  EXPECT_EQ(cpu_feature_list(f), "avx2 fma");
}

TEST(KernelCeiling, Avx512DropsOnlyAmx) {
  const CpuFeatures f = apply_kernel_ceiling(everything(), KernelCeiling::kAvx512);
  EXPECT_EQ(cpu_feature_list(f),
            "avx2 fma avx512f avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16");
}

TEST(KernelCeiling, AutoAndNarrowCpusAreUnchanged) {
  EXPECT_EQ(cpu_feature_list(apply_kernel_ceiling(everything(), KernelCeiling::kAuto)),
            cpu_feature_list(everything()));
  CpuFeatures old;
  old.avx2 = true;  // no FMA: nothing to add
  EXPECT_EQ(cpu_feature_list(apply_kernel_ceiling(old, KernelCeiling::kAvx2)), "avx2");
}

TEST(KernelCeiling, LibrariesAreCappedToo) {
  EXPECT_TRUE(library_isa_caps(KernelCeiling::kAuto).empty());
  const auto caps = library_isa_caps(KernelCeiling::kAvx2);
  auto value = [&](const std::string& name) {
    for (const auto& [n, v] : caps)
      if (n == name) return v;
    return std::string();
  };
  EXPECT_EQ(value("ATEN_CPU_CAPABILITY"), "avx2");
  EXPECT_EQ(value("DNNL_MAX_CPU_ISA"), "AVX2");
  EXPECT_EQ(value("ONEDNN_MAX_CPU_ISA"), "AVX2");
}

TEST(KernelCeiling, EnvironmentMasksDetectedFeatures) {
  {
    ScopedKernelsEnv env("avx2");
    EXPECT_EQ(kernel_ceiling(), KernelCeiling::kAvx2);
    const CpuFeatures f = detect_cpu_features();
    EXPECT_FALSE(f.avx512f || f.avx512_vnni || f.avx_vnni || f.amx);
    EXPECT_EQ(f.avx2, detect_native_cpu_features().avx2);
    EXPECT_EQ(kernel_ceiling_env_error(), "");
  }
  {
    ScopedKernelsEnv env("avx1024");
    EXPECT_EQ(kernel_ceiling(), KernelCeiling::kAuto);
    EXPECT_NE(kernel_ceiling_env_error().find("avx1024"), std::string::npos);
  }
  {
    ScopedKernelsEnv env(nullptr);
    EXPECT_EQ(cpu_feature_list(detect_cpu_features()),
              cpu_feature_list(detect_native_cpu_features()));
  }
}

TEST(KernelCeiling, FlagInArgvBecomesTheEnvironment) {
  ScopedKernelsEnv env(nullptr);
  char a0[] = "ktl", a1[] = "bench", a2[] = "--kernels", a3[] = "avx2";
  char* argv[] = {a0, a1, a2, a3, nullptr};
  prepare_kernel_ceiling_env(4, argv);
  EXPECT_EQ(kernel_ceiling(), KernelCeiling::kAvx2);
  char b2[] = "--kernels=auto";
  char* argv2[] = {a0, a1, b2, nullptr};
  prepare_kernel_ceiling_env(3, argv2);
  EXPECT_EQ(kernel_ceiling(), KernelCeiling::kAuto);
  char c3[] = "nonsense";  // left for the command to reject
  char* argv3[] = {a0, a1, a2, c3, nullptr};
  prepare_kernel_ceiling_env(4, argv3);
  EXPECT_EQ(kernel_ceiling(), KernelCeiling::kAuto);
}

// A dispatched function: each copy reports itself, and the dispatcher picks one this CPU runs.
KTL_SIMD_BODY int twice_body(int x) {
  return 2 * x;
}
KTL_SIMD_DISPATCH(int, twice, (int x), (x))

TEST(SimdDispatch, EveryCopyComputesTheSame) {
  EXPECT_EQ(twice(21), 42);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  EXPECT_EQ(twice_default(21), 42);
  if (detect_native_cpu_features().avx2) EXPECT_EQ(twice_avx2(21), 42);
  if (detect_native_cpu_features().avx512f) EXPECT_EQ(twice_avx512(21), 42);
#endif
}

}  // namespace
}  // namespace ktl
