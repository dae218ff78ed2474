// The int8 x int8 kernels against their naive twin (exact int32 sums) and the dequantized GEMM
// against its twin and fp32. Torch-free: the aarch64 build (tests/kernels/aarch64/) runs it under
// qemu too, where the NEON kernels are the ones compared.
#include "core/kernels/int8_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>

namespace ktl {
namespace {

std::vector<int8_t> random_int8(int64_t n, uint64_t seed) {
  std::mt19937 rng(seed);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);  // incl. -128
  return v;
}

std::vector<float> random_floats(int64_t n, uint64_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The naive twin: the plain triple loop, sums[n * out + o] = sum_i x.q[n, i] * w[o, i].
std::vector<int32_t> naive_s32(const Int8Rows& x, const std::vector<int8_t>& w, int64_t out) {
  const int64_t rows = x.rows, in = x.cols;
  std::vector<int32_t> twin(rows * out);
  for (int64_t n = 0; n < rows; ++n)
    for (int64_t o = 0; o < out; ++o) {
      int32_t t = 0;
      for (int64_t i = 0; i < in; ++i) t += int32_t(x.q[n * in + i]) * int32_t(w[o * in + i]);
      twin[n * out + o] = t;
    }
  return twin;
}

const Int8Kernels kAll[] = {Int8Kernels::kAvx512Vnni, Int8Kernels::kAvxVnni, Int8Kernels::kAvx2,
                            Int8Kernels::kNeonI8mm,   Int8Kernels::kNeonDot, Int8Kernels::kScalar};

TEST(Int8Gemm, EveryKernelEqualsTheScalarTwinExactlyOverOddSizes) {
  int tested = 0;
  for (int64_t in : {1, 7, 31, 32, 63, 64, 65, 100, 129, 200}) {
    for (int64_t out : {1, 3, 4, 5, 13}) {
      const auto w = random_int8(out * in, in * 31 + out);
      const auto sums = int8_row_sums(w.data(), out, in);
      for (int64_t rows : {1, 2, 3, 4, 5, 7, 9}) {
        const auto xf = random_floats(rows * in, rows + in);
        const Int8Rows x = quantize_rows_int8(xf.data(), rows, in);
        const std::vector<int32_t> twin = naive_s32(x, w, out);
        for (Int8Kernels k : kAll) {
          if (!int8_kernels_supported(k)) continue;
          std::vector<int32_t> got(rows * out, 12345);
          // Two ranges, as parallel_for would split them.
          const int64_t mid = out / 2;
          int8_dot_s32(k, w.data(), sums.data(), in, 0, mid, x, got.data(), out);
          int8_dot_s32(k, w.data(), sums.data(), in, mid, out, x, got.data(), out);
          ASSERT_EQ(got, twin) << to_string(k) << " in " << in << " out " << out << " rows "
                               << rows;
          ++tested;
        }
      }
    }
  }
  EXPECT_GT(tested, 0);
  EXPECT_NE(best_int8_kernels(), Int8Kernels::kBest);
}

// The prefill path (weight blocks repacked into the VNNI layout, outer-product micro-kernel)
// against the same naive twin: ragged inputs (not a multiple of 4), output ranges that start and
// end inside a 64-row block, row counts around the 6-row micro-kernel.
TEST(Int8Gemm, PackedPrefillKernelsEqualTheScalarTwinExactly) {
  int tested = 0;
  for (int64_t in : {1, 3, 4, 5, 63, 64, 130}) {
    for (int64_t out : {1, 63, 64, 65, 150}) {
      const auto w = random_int8(out * in, in * 17 + out);
      const auto sums = int8_row_sums(w.data(), out, in);
      for (int64_t rows : {1, 5, 6, 7, 13, 40}) {
        const auto xf = random_floats(rows * in, rows * 3 + in);
        const Int8Rows x = quantize_rows_int8(xf.data(), rows, in);
        const std::vector<int32_t> twin = naive_s32(x, w, out);
        for (Int8Kernels k : kAll) {
          if (!int8_packed_supported(k)) continue;
          std::vector<int32_t> got(rows * out, 12345);
          const int64_t mid = out / 3;
          int8_dot_s32_packed(k, w.data(), sums.data(), in, 0, mid, x, got.data(), out);
          int8_dot_s32_packed(k, w.data(), sums.data(), in, mid, out, x, got.data(), out);
          ASSERT_EQ(got, twin) << to_string(k) << " in " << in << " out " << out << " rows "
                               << rows;
          ++tested;
        }
      }
    }
  }
  EXPECT_GT(tested, 0);
  EXPECT_TRUE(int8_packed_supported(Int8Kernels::kScalar));
}

TEST(Int8Gemm, QuantizeRowsRoundsWithinHalfAStep) {
  const auto xf = random_floats(3 * 50, 9);
  std::vector<float> with_zero(xf);
  std::fill(with_zero.begin() + 50, with_zero.begin() + 100, 0.0f);  // row 1 all zero
  const Int8Rows x = quantize_rows_int8(with_zero.data(), 3, 50);
  EXPECT_EQ(x.scale[1], 1.0f);
  for (int64_t n = 0; n < 3; ++n) {
    int amax = 0;
    for (int64_t i = 0; i < 50; ++i) {
      const int8_t q = x.q[n * 50 + i];
      EXPECT_EQ(int(x.u[n * 50 + i]), int(q) + 128);
      EXPECT_LE(std::abs(q * x.scale[n] - with_zero[n * 50 + i]), x.scale[n] * 0.5f + 1e-6f);
      amax = std::max(amax, std::abs(int(q)));
    }
    EXPECT_EQ(amax, n == 1 ? 0 : 127);
  }
}

// The vector quantizer (AVX-512 where the CPU has it) against the portable loops, bit for bit:
// lengths around the 16-float vector, an all-zero row, values that round to exact halves.
TEST(Int8Gemm, SimdQuantizerEqualsThePortableOneExactly) {
  for (int64_t cols : {1, 15, 16, 17, 33, 130, 768}) {
    auto xf = random_floats(4 * cols, cols);
    std::fill(xf.begin() + cols, xf.begin() + 2 * cols, 0.0f);  // row 1: zeros
    for (int64_t i = 0; i < cols; ++i) xf[2 * cols + i] = 0.5f * static_cast<float>(i % 9 - 4);
    for (bool with_signed : {true, false}) {
      const Int8Rows a = quantize_rows_int8(xf.data(), 4, cols, with_signed, /*simd=*/true);
      const Int8Rows b = quantize_rows_int8(xf.data(), 4, cols, with_signed, /*simd=*/false);
      EXPECT_EQ(a.q, b.q) << cols;
      EXPECT_EQ(a.u, b.u) << cols;
      EXPECT_EQ(a.scale, b.scale) << cols;
      EXPECT_EQ(a.q.size(), with_signed ? size_t(4 * cols) : size_t(0));
    }
  }
}

// int8_gemm (quantize, then the row tiles or, from kInt8PackedMinRows rows, the packed kernels)
// against the twin: the same quantized activations times the dequantized weights in fp32 (close up
// to float rounding), and against the fp32 product (close up to quantization).
TEST(Int8Gemm, DequantizedGemmEqualsTwinAndIsCloseToFp32) {
  const int64_t out = 77, in = 130;  // 130: tails in every kernel
  std::vector<float> w = random_floats(out * in, 7);
  for (auto& v : w) v *= 0.05f;
  std::vector<int8_t> q(out * in);  // per output row, symmetric
  std::vector<float> ws(out);
  for (int64_t o = 0; o < out; ++o) {
    float amax = 0;
    for (int64_t i = 0; i < in; ++i) amax = std::max(amax, std::fabs(w[o * in + i]));
    ws[o] = amax / 127.0f;
    for (int64_t i = 0; i < in; ++i)
      q[o * in + i] = static_cast<int8_t>(std::lround(w[o * in + i] / ws[o]));
  }
  const auto sums = int8_row_sums(q.data(), out, in);
  for (int64_t rows : {1, 5, 16, 33, 200}) {  // 200: prefill-sized (the packed kernels)
    const auto x = random_floats(rows * in, rows);
    const Int8Rows xq = quantize_rows_int8(x.data(), rows, in);
    for (Int8Kernels k : kAll) {
      if (!int8_kernels_supported(k)) continue;
      std::vector<float> got(rows * out);
      int8_gemm(q.data(), ws.data(), sums.data(), out, in, x.data(), rows, got.data(), k);
      double err2 = 0, ref2 = 0;
      for (int64_t n = 0; n < rows; ++n)
        for (int64_t o = 0; o < out; ++o) {
          double twin = 0, fp32 = 0;
          for (int64_t i = 0; i < in; ++i) {
            twin += double(xq.q[n * in + i]) * xq.scale[n] * double(q[o * in + i]) * ws[o];
            fp32 += double(x[n * in + i]) * w[o * in + i];
          }
          const double g = got[n * out + o];
          ASSERT_NEAR(g, twin, 1e-4 + 1e-4 * std::fabs(twin)) << to_string(k) << " rows " << rows;
          err2 += (g - fp32) * (g - fp32);
          ref2 += fp32 * fp32;
        }
      EXPECT_LT(std::sqrt(err2 / ref2), 0.02) << to_string(k) << " rows " << rows;
    }
  }
}

}  // namespace
}  // namespace ktl
