// On AArch64 the NEON kernels are compiled in and picked: the aarch64 build of these tests
// (tests/kernels/aarch64/, KTL_EXPECT_ARM_KERNELS) runs under `qemu-aarch64 -cpu max`, which has
// dotprod and i8mm, so a build that silently fell back to the scalar twins fails here. The other
// tests of this folder compare each kernel with its twin; this one checks which kernels they were.
#include <gtest/gtest.h>

#include "core/base/cpu_features.h"
#include "core/kernels/bf16_gemv.h"
#include "core/kernels/int8_gemm.h"

namespace ktl {
namespace {

TEST(ArmKernels, TheCpuFeaturesTheKernelsNeedAreReported) {
#if defined(__aarch64__)
  const CpuFeatures f = detect_cpu_features();
#if defined(KTL_EXPECT_ARM_KERNELS)
  EXPECT_TRUE(f.neon_dot);
  EXPECT_TRUE(f.i8mm);
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
TEST(ArmKernels, QemuMaxRunsTheNeonKernels) {
  EXPECT_TRUE(int8_kernels_supported(Int8Kernels::kNeonDot));
  EXPECT_TRUE(int8_kernels_supported(Int8Kernels::kNeonI8mm));
  EXPECT_EQ(best_int8_kernels(), Int8Kernels::kNeonI8mm);
  EXPECT_STREQ(to_string(Int8Kernels::kBest), "neon-i8mm");
  EXPECT_STREQ(int8_quantizer(), "neon");
  EXPECT_STREQ(to_string(Bf16Kernels::kBest), "neon");
}
#endif

}  // namespace
}  // namespace ktl
