// The AVX2 packed prefill kernel (int8_packed_avx2.h, the sign trick) against its twins: the
// scalar packed kernel and the plain triple loop, exact in int32. Extreme values are where
// vpmaddubsw would saturate (|q| = 127 against w = -128 / 127, pairs of the same sign); widths
// cross the kernel's 768-input passes and end off a multiple of 4.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/kernels/int8_gemm.h"

namespace ktl {
namespace {

// Activation rows from their signed values (u = q + 128, with the packed kernels' slack).
Int8Rows rows_from(const std::vector<int8_t>& q, int64_t rows, int64_t cols) {
  Int8Rows x;
  x.rows = rows;
  x.cols = cols;
  x.q = q;
  x.u.resize(rows * cols + 3);
  for (int64_t i = 0; i < rows * cols; ++i) x.u[i] = static_cast<uint8_t>(q[i] + 128);
  x.scale.assign(rows, 1.0f);
  return x;
}

std::vector<int32_t> naive_s32(const Int8Rows& x, const std::vector<int8_t>& w, int64_t out) {
  const int64_t in = x.cols;
  std::vector<int32_t> twin(x.rows * out);
  for (int64_t n = 0; n < x.rows; ++n)
    for (int64_t o = 0; o < out; ++o) {
      int32_t t = 0;
      for (int64_t i = 0; i < in; ++i) t += int32_t(x.q[n * in + i]) * int32_t(w[o * in + i]);
      twin[n * out + o] = t;
    }
  return twin;
}

enum class Fill { kRandom, kExtremeSame, kExtremeMixed };

// w in [-128, 127] and q in [-127, 127] (what the quantizer makes).
void fill(Fill f, std::mt19937& rng, std::vector<int8_t>& w, std::vector<int8_t>& q) {
  for (size_t i = 0; i < w.size(); ++i) {
    if (f == Fill::kRandom) w[i] = static_cast<int8_t>(int(rng() % 256) - 128);
    if (f == Fill::kExtremeSame) w[i] = (i / 7) % 2 ? 127 : -128;  // runs of one sign
    if (f == Fill::kExtremeMixed) w[i] = rng() % 2 ? 127 : -127;
  }
  for (size_t i = 0; i < q.size(); ++i) {
    if (f == Fill::kRandom) q[i] = static_cast<int8_t>(int(rng() % 255) - 127);
    if (f == Fill::kExtremeSame) q[i] = (i / 5) % 2 ? 127 : -127;
    if (f == Fill::kExtremeMixed) q[i] = rng() % 3 == 0 ? 0 : (rng() % 2 ? 127 : -127);
  }
}

TEST(Int8PackedAvx2, EqualsItsScalarTwinExactly) {
  if (!int8_packed_supported(Int8Kernels::kAvx2)) GTEST_SKIP() << "no AVX2 here";
  std::mt19937 rng(24);
  int tested = 0;
  for (Fill f : {Fill::kRandom, Fill::kExtremeSame, Fill::kExtremeMixed}) {
    for (int64_t in : {1, 2, 3, 4, 5, 31, 64, 130, 767, 768, 769, 1539, 2048}) {
      for (int64_t out : {1, 32, 33, 64, 65, 130}) {
        const int64_t rows = (in + out) % 2 ? 7 : 12;  // odd: a single-row pass at the end
        std::vector<int8_t> w(out * in), q(rows * in);
        fill(f, rng, w, q);
        const Int8Rows x = rows_from(q, rows, in);
        const auto sums = int8_row_sums(w.data(), out, in);
        const std::vector<int32_t> twin = naive_s32(x, w, out);
        std::vector<int32_t> scalar(rows * out, 7), got(rows * out, 7);
        int8_dot_s32_packed(Int8Kernels::kScalar, w.data(), sums.data(), in, 0, out, x,
                            scalar.data(), out);
        // Two ranges, one starting inside a 64-row block, as parallel_for may split them.
        const int64_t mid = out / 3;
        int8_dot_s32_packed(Int8Kernels::kAvx2, w.data(), sums.data(), in, 0, mid, x, got.data(),
                            out);
        int8_dot_s32_packed(Int8Kernels::kAvx2, w.data(), sums.data(), in, mid, out, x, got.data(),
                            out);
        ASSERT_EQ(scalar, twin) << "in " << in << " out " << out;
        ASSERT_EQ(got, twin) << "fill " << int(f) << " in " << in << " out " << out;
        ++tested;
      }
    }
  }
  EXPECT_GT(tested, 0);
}

TEST(Int8PackedAvx2, ExtremesWouldSaturateTheUnsignedForm) {
  // The case the sign trick exists for: q = 127 (u8 255) against w = 127 pairs; the exact sum.
  if (!int8_packed_supported(Int8Kernels::kAvx2)) GTEST_SKIP() << "no AVX2 here";
  const int64_t in = 256, out = 64, rows = 6;
  std::vector<int8_t> w(out * in, 127), q(rows * in, 127);
  for (int64_t i = 0; i < in; ++i) w[5 * in + i] = -128;  // row 5: the most negative
  const Int8Rows x = rows_from(q, rows, in);
  const auto sums = int8_row_sums(w.data(), out, in);
  std::vector<int32_t> got(rows * out);
  int8_dot_s32_packed(Int8Kernels::kAvx2, w.data(), sums.data(), in, 0, out, x, got.data(), out);
  EXPECT_EQ(got[0], 127 * 127 * in);
  EXPECT_EQ(got[5], -128 * 127 * in);
  EXPECT_EQ(got[(rows - 1) * out + 63], 127 * 127 * in);
}

TEST(Int8PackedAvx2, GemmUsesItFromThePackedRowCount) {
  if (!int8_kernels_supported(Int8Kernels::kAvx2)) GTEST_SKIP() << "no AVX2 here";
  EXPECT_TRUE(int8_gemm_packed(Int8Kernels::kAvx2, kInt8PackedMinRows));
  EXPECT_FALSE(int8_gemm_packed(Int8Kernels::kAvx2, kInt8PackedMinRows - 1));
  EXPECT_TRUE(int8_gemm_needs_signed(Int8Kernels::kAvx2, kInt8PackedMinRows));  // reads q
}

}  // namespace
}  // namespace ktl
