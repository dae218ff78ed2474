// The bf16 and fp32 GEMV kernels against their naive twin (the weights widened to fp32, plain
// loops in double), every kernel this CPU runs, row counts across the 8-row calls and the 4-row
// tiles, widths with vector tails.
#include "core/kernels/bf16_gemv.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

namespace ktl {
namespace {

float widen(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t to_bf16(float f) {  // truncation: any bf16 value will do as a weight
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return static_cast<uint16_t>(bits >> 16);
}

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// y [n, out] of the twin.
std::vector<double> twin(const std::vector<float>& w, int64_t out, int64_t in,
                         const std::vector<float>& x, int64_t n) {
  std::vector<double> y(n * out);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double t = 0;
      for (int64_t i = 0; i < in; ++i) t += double(w[o * in + i]) * x[r * in + i];
      y[r * out + o] = t;
    }
  return y;
}

const Bf16Kernels kAll[] = {Bf16Kernels::kBest, Bf16Kernels::kAvx512, Bf16Kernels::kAvx2,
                            Bf16Kernels::kNeon, Bf16Kernels::kScalar};

TEST(Bf16GemvKernels, EveryKernelEqualsTheTwinForBf16AndFp32Weights) {
  int tested = 0;
  for (int64_t in : {1, 7, 70, 129}) {  // 70, 129: tails after 16-wide (and 64-wide) steps
    const int64_t out = 130;            // not a multiple of the 4-row tiles
    const auto wf = randn(out * in, in, 0.05f);
    std::vector<uint16_t> wb(wf.size());
    std::vector<float> wide(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) wide[i] = widen(wb[i] = to_bf16(wf[i]));
    for (int64_t n : {1, 2, 3, 4, 5, 8, 9, 16}) {
      const auto x = randn(n * in, n * 7 + in);
      const auto want_b = twin(wide, out, in, x, n), want_f = twin(wf, out, in, x, n);
      for (Bf16Kernels k : kAll) {
        if (!bf16_kernels_supported(k)) {
          std::vector<float> y(n * out);
          EXPECT_THROW(bf16_gemv(wb.data(), out, in, x.data(), n, y.data(), k),
                       std::invalid_argument);
          continue;
        }
        std::vector<float> yb(n * out), yf(n * out);
        bf16_gemv(wb.data(), out, in, x.data(), n, yb.data(), k);
        fp32_gemv(wf.data(), out, in, x.data(), n, yf.data(), k);
        for (int64_t i = 0; i < n * out; ++i) {
          ASSERT_NEAR(yb[i], want_b[i], 1e-5 + 1e-5 * std::fabs(want_b[i]))
              << to_string(k) << " in " << in << " rows " << n << " at " << i;
          ASSERT_NEAR(yf[i], want_f[i], 1e-5 + 1e-5 * std::fabs(want_f[i]))
              << to_string(k) << " in " << in << " rows " << n << " at " << i;
        }
        ++tested;
      }
    }
  }
  EXPECT_GT(tested, 0);
  EXPECT_NE(best_bf16_kernels(), Bf16Kernels::kBest);
  EXPECT_TRUE(bf16_kernels_supported(Bf16Kernels::kScalar));
}

}  // namespace
}  // namespace ktl
