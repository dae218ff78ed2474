// On AArch64 the NEON kernels are compiled in and picked: the aarch64 build of these tests
// (tests/kernels/aarch64/, KTL_EXPECT_ARM_KERNELS) runs under `qemu-aarch64 -cpu max`, which has
// dotprod and i8mm, so a build that silently fell back to the scalar twins fails here; and again
// under `-cpu cortex-a76` (dotprod, no i8mm; KTL_EXPECT_I8MM=0), where the i8mm kernels must not
// be picked (they would die on an illegal instruction). The other tests of this folder compare
// each kernel with its twin; this one checks which kernels they were.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/base/cpu_features.h"
#include "core/kernels/bf16_gemv.h"
#include "core/kernels/int8_gemm.h"

namespace ktl {
namespace {

#if defined(KTL_EXPECT_ARM_KERNELS)
// Whether the emulated CPU has i8mm: yes unless the runner says KTL_EXPECT_I8MM=0.
bool expect_i8mm() {
  const char* v = std::getenv("KTL_EXPECT_I8MM");
  return !v || std::string(v) != "0";
}
#endif

TEST(ArmKernels, TheCpuFeaturesTheKernelsNeedAreReported) {
#if defined(__aarch64__)
  const CpuFeatures f = detect_cpu_features();
#if defined(KTL_EXPECT_ARM_KERNELS)
  EXPECT_TRUE(f.neon_dot);
  EXPECT_EQ(f.i8mm, expect_i8mm());
#endif
  EXPECT_EQ(int8_kernels_supported(Int8Kernels::kNeonDot), f.neon_dot);
  EXPECT_EQ(best_bf16_kernels(), Bf16Kernels::kNeon);  // NEON is baseline on AArch64
#else
  const CpuFeatures f = detect_native_cpu_features();
  EXPECT_FALSE(f.neon_dot || f.i8mm);
  EXPECT_FALSE(int8_kernels_supported(Int8Kernels::kNeonDot));
  EXPECT_FALSE(int8_kernels_supported(Int8Kernels::kNeonI8mm));
  EXPECT_FALSE(bf16_kernels_supported(Bf16Kernels::kNeon));
#endif
}

#if defined(KTL_EXPECT_ARM_KERNELS)
TEST(ArmKernels, TheEmulatedCpuRunsTheNeonKernels) {
  EXPECT_TRUE(int8_kernels_supported(Int8Kernels::kNeonDot));
  EXPECT_EQ(int8_kernels_supported(Int8Kernels::kNeonI8mm), expect_i8mm());
  const Int8Kernels best = expect_i8mm() ? Int8Kernels::kNeonI8mm : Int8Kernels::kNeonDot;
  EXPECT_EQ(best_int8_kernels(), best);
  EXPECT_STREQ(to_string(Int8Kernels::kBest), to_string(best));
  EXPECT_STREQ(int8_quantizer(), "neon");
  EXPECT_STREQ(to_string(Bf16Kernels::kBest), "neon");
}
#endif

}  // namespace
}  // namespace ktl
