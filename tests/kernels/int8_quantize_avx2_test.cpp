// The AVX2 activation quantizer (int8_quantize_avx2.h) against the portable loops, bit for bit:
// lengths around the 8-float vector, an all-zero row, values that round to exact halves, and
// values beyond the clamp.
#include "core/kernels/int8_quantize_avx2.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/base/cpu_features.h"
#include "core/kernels/int8_gemm.h"

namespace ktl {
namespace {

TEST(Int8QuantizeAvx2, EqualsThePortableLoopsExactly) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "x86-64 only";
#else
  if (!detect_native_cpu_features().avx2) GTEST_SKIP() << "no AVX2 here";
  std::mt19937 rng(8);
  std::normal_distribution<float> d(0.0f, 2.0f);
  for (int64_t cols : {1, 7, 8, 9, 15, 16, 17, 33, 130, 768}) {
    std::vector<float> x(4 * cols);
    for (auto& v : x) v = d(rng);
    std::fill(x.begin() + cols, x.begin() + 2 * cols, 0.0f);                       // row 1: zeros
    for (int64_t i = 0; i < cols; ++i) x[2 * cols + i] = 0.5f * float(i % 9 - 4);  // halves
    const Int8Rows twin = quantize_rows_int8(x.data(), 4, cols, true, /*simd=*/false);
    for (int64_t n = 0; n < 4; ++n) {
      const float* row = x.data() + n * cols;
      const float amax = int8_abs_max_avx2(row, cols);
      const float scale = amax > 0 ? amax / 127.0f : 1.0f;
      EXPECT_EQ(scale, twin.scale[n]) << cols;
      // Beyond the clamp too: an inverse larger than the row's own.
      for (const float inv : {1.0f / scale, 3.0f / scale}) {
        std::vector<int8_t> q(cols, 99);
        std::vector<uint8_t> u(cols, 99);
        const int64_t done = int8_quantize_avx2(row, cols, inv, q.data(), u.data());
        EXPECT_EQ(done, cols - cols % 8);
        for (int64_t i = 0; i < done; ++i) {
          const float v = std::min(127.0f, std::max(-127.0f, row[i] * inv));
          const int want = static_cast<int>(std::nearbyint(v));
          ASSERT_EQ(int(q[i]), want) << cols << " " << i;
          ASSERT_EQ(int(u[i]), want + 128) << cols << " " << i;
          if (inv == 1.0f / scale) {
            ASSERT_EQ(q[i], twin.q[n * cols + i]) << cols << " " << i;
          }
        }
        std::vector<uint8_t> u_only(cols, 99);
        int8_quantize_avx2(row, cols, inv, nullptr, u_only.data());
        EXPECT_TRUE(std::equal(u_only.begin(), u_only.begin() + done, u.begin()));
      }
    }
  }
#endif
}

}  // namespace
}  // namespace ktl
