#include "core/base/blas_tuning.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace ktl {
namespace {

CpuFeatures avx2_cpu() {
  CpuFeatures f;
  f.vendor = "GenuineIntel";
  f.family = 6;
  f.model = 207;
  f.avx2 = f.fma = true;
  return f;
}

CpuFeatures avx512_cpu(bool bf16) {
  CpuFeatures f = avx2_cpu();
  f.avx512f = f.avx512bw = f.avx512vl = true;
  f.avx512_bf16 = bf16;
  return f;
}

TEST(BlasCore, GenericCoresAreRecognised) {
  EXPECT_TRUE(is_generic_blas_core("Prescott"));
  EXPECT_TRUE(is_generic_blas_core("NEHALEM"));
  EXPECT_TRUE(is_generic_blas_core("Sandybridge"));
  EXPECT_FALSE(is_generic_blas_core("Haswell"));
  EXPECT_FALSE(is_generic_blas_core("SkylakeX"));
  EXPECT_FALSE(is_generic_blas_core("Zen"));
  EXPECT_FALSE(is_generic_blas_core("NeoverseN1"));
}

TEST(BlasCore, BestCoreFollowsTheFeatures) {
  EXPECT_EQ(best_blas_core_for(CpuFeatures{}), "");
  CpuFeatures avx2_no_fma = avx2_cpu();
  avx2_no_fma.fma = false;
  EXPECT_EQ(best_blas_core_for(avx2_no_fma), "");
  EXPECT_EQ(best_blas_core_for(avx2_cpu()), "Haswell");
  EXPECT_EQ(best_blas_core_for(avx512_cpu(false)), "SkylakeX");
  EXPECT_EQ(best_blas_core_for(avx512_cpu(true)), "Cooperlake");
  CpuFeatures f_only = avx2_cpu();
  f_only.avx512f = true;  // AVX-512F without BW/VL: SkylakeX kernels would fault
  EXPECT_EQ(best_blas_core_for(f_only), "Haswell");
}

TEST(BlasCore, KernelCeilingBelowOpenBlassOwnChoiceGetsHaswell) {
  // --kernels avx2 on an AVX-512 CPU: the masked features allow Haswell.
  EXPECT_TRUE(is_avx512_blas_core("Cooperlake"));
  EXPECT_TRUE(is_avx512_blas_core("SKYLAKEX"));
  EXPECT_FALSE(is_avx512_blas_core("Haswell"));
  EXPECT_FALSE(is_avx512_blas_core("Zen"));
  auto c = choose_blas_core({avx2_cpu(), "Cooperlake", "", ""});
  EXPECT_EQ(c.core, "Haswell");
  EXPECT_NE(c.reason.find("ceiling"), std::string::npos) << c.reason;
  EXPECT_EQ(choose_blas_core({avx2_cpu(), "Zen", "", ""}).core, "");  // already AVX2 kernels
  EXPECT_EQ(choose_blas_core({avx512_cpu(true), "Cooperlake", "", ""}).core, "");
  EXPECT_EQ(choose_blas_core({avx2_cpu(), "SkylakeX", "SkylakeX", ""}).core, "");  // the user's
  EXPECT_EQ(choose_blas_core({avx2_cpu(), "SkylakeX", "", "Haswell: failed"}).core, "");
}

TEST(BlasCore, MisreadCpuGetsTheKernelItAllows) {
  auto c = choose_blas_core({avx512_cpu(true), "Prescott", "", ""});
  EXPECT_EQ(c.core, "Cooperlake");
  EXPECT_NE(c.reason.find("model 207"), std::string::npos) << c.reason;
  EXPECT_EQ(choose_blas_core({avx512_cpu(false), "Prescott", "", ""}).core, "SkylakeX");
  EXPECT_EQ(choose_blas_core({avx2_cpu(), "Sandybridge", "", ""}).core, "Haswell");
}

TEST(BlasCore, UserValueIsNeverOverridden) {
  auto c = choose_blas_core({avx512_cpu(true), "Prescott", "Prescott", ""});
  EXPECT_EQ(c.core, "");
  EXPECT_NE(c.reason.find("set outside ktl"), std::string::npos);
}

TEST(BlasCore, RealCoreIsKept) {
  EXPECT_EQ(choose_blas_core({avx512_cpu(true), "Haswell", "", ""}).core, "");
  EXPECT_EQ(choose_blas_core({avx512_cpu(true), "Zen", "", ""}).core, "");
}

TEST(BlasCore, NotOpenBlasOrOldCpuOrRejectedChoosesNothing) {
  EXPECT_EQ(choose_blas_core({avx512_cpu(true), "", "", ""}).reason, "the BLAS is not OpenBLAS");
  EXPECT_EQ(choose_blas_core({CpuFeatures{}, "Prescott", "", ""}).core, "");
  auto c = choose_blas_core({avx512_cpu(true), "Prescott", "", "Cooperlake: SGEMM differs"});
  EXPECT_EQ(c.core, "");
  EXPECT_NE(c.reason.find("rejected"), std::string::npos);
}

void naive_sgemm(int m, int n, int k, const float* a, const float* b, float* c) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float s = 0;
      for (int p = 0; p < k; ++p) s += a[i * k + p] * b[p * n + j];
      c[i * n + j] = s;
    }
}

TEST(BlasCore, SgemmCheckPassesACorrectGemm) {
  std::string why;
  EXPECT_TRUE(sgemm_agrees_with_naive(naive_sgemm, &why)) << why;
}

TEST(BlasCore, SgemmCheckCatchesAWrongGemm) {
  // A kernel that drops the last column of the result, as a broken edge path would.
  auto broken = [](int m, int n, int k, const float* a, const float* b, float* c) {
    naive_sgemm(m, n, k, a, b, c);
    for (int i = 0; i < m; ++i) c[i * n + n - 1] = 0;
  };
  std::string why;
  EXPECT_FALSE(sgemm_agrees_with_naive(broken, &why));
  EXPECT_NE(why.find("differs"), std::string::npos) << why;
}

TEST(BlasCore, SystemBlasPassesTheCheck) {
  // The test binary does not link a BLAS: load the system one so dlsym can find it.
  void* h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_GLOBAL);
  if (!h) h = dlopen("libblas.so.3", RTLD_NOW | RTLD_GLOBAL);
  SgemmFn sgemm = loaded_sgemm();
  if (!sgemm) GTEST_SKIP() << "no cblas_sgemm on this machine";
  std::string why;
  EXPECT_TRUE(sgemm_agrees_with_naive(sgemm, &why)) << why;
  BlasStatus s = blas_status();
  if (!s.core.empty()) {
    EXPECT_NE(s.config.find("OpenBLAS"), std::string::npos) << s.config;
    EXPECT_FALSE(s.note.empty());
  }
}

// `ktl info` under `env_prefix` (an `env ...` command prefix); its stdout.
std::string ktl_info(const std::string& env_prefix) {
  const std::string cmd = env_prefix + " " + std::getenv("KTL_BIN") + " info --model-config " +
                          KTL_SOURCE_DIR "/configs/model_tiny.yaml 2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  return out;
}

// The whole path, on a CPU OpenBLAS reads correctly: pretend it reported Prescott; ktl must
// re-execute with the best core, pass the SGEMM check and say so; a user's value stays.
TEST(BlasCore, KtlReexecutesWithTheChosenCoreAndKeepsTheUsersValue) {
  const char* bin = std::getenv("KTL_BIN");
  if (!bin || !std::filesystem::exists(bin)) GTEST_SKIP() << "KTL_BIN not built";
  const std::string best = best_blas_core_for(detect_cpu_features());
  if (best.empty()) GTEST_SKIP() << "no AVX2+FMA";
  const std::string clean = "env -u OPENBLAS_CORETYPE -u KTL_BLAS_CORETYPE -u KTL_BLAS_REJECTED";
  if (ktl_info(clean).find("BLAS core      -") != std::string::npos)
    GTEST_SKIP() << "ktl runs without OpenBLAS here";
  std::string out = ktl_info(clean + " KTL_TEST_BLAS_REPORTED_CORE=Prescott");
  EXPECT_NE(out.find("BLAS core      " + best +
                     " (chosen by ktl: OpenBLAS reported Prescott; "
                     "SGEMM check passed)"),
            std::string::npos)
      << out;
  out = ktl_info(clean + " OPENBLAS_CORETYPE=Haswell KTL_TEST_BLAS_REPORTED_CORE=Prescott");
  EXPECT_NE(out.find("BLAS core      Haswell (OPENBLAS_CORETYPE=Haswell set outside ktl)"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace ktl
