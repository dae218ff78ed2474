// The per-row step operations against naive double-precision twins of the LibTorch compositions
// they replace (core/model/ops.cpp): RMSNorm and rotate-half RoPE on the q/k part of a fused row;
// odd widths, several rows, in place and out of place.
#include "core/kernels/decode_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace ktl {
namespace {

std::vector<float> randoms(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

TEST(DecodeOps, RmsNormEqualsTheDoubleTwin) {
  for (int64_t d : {1, 7, 16, 33, 768}) {
    const int64_t rows = 3;
    auto x = randoms(rows * d, 1 + d, 3.0f), w = randoms(d, 2 + d);
    std::vector<float> y(rows * d), inplace = x;
    rms_norm_rows(x.data(), w.data(), rows, d, 1e-5f, y.data());
    rms_norm_rows(inplace.data(), w.data(), rows, d, 1e-5f, inplace.data());
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += double(x[r * d + i]) * x[r * d + i];
      const double inv = 1.0 / std::sqrt(ss / d + 1e-5);
      for (int64_t i = 0; i < d; ++i) {
        const double want = x[r * d + i] * inv * w[i];
        EXPECT_NEAR(y[r * d + i], want, 1e-5 * (1 + std::fabs(want))) << d << " " << r << " " << i;
        EXPECT_EQ(inplace[r * d + i], y[r * d + i]);
      }
    }
  }
}

TEST(DecodeOps, RopeRotatesEachHeadOfTheQkPartInPlace) {
  const int64_t rows = 3, H = 3, KV = 1, dh = 8, stride = (H + 2 * KV) * dh;
  auto x = randoms(rows * stride, 5), orig = x;
  std::vector<float> cos(rows * dh), sin(rows * dh);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < dh / 2; ++i) {
      const double a = (r + 2) * std::pow(10000.0, -2.0 * i / dh);
      cos[r * dh + i] = cos[r * dh + dh / 2 + i] = float(std::cos(a));
      sin[r * dh + i] = sin[r * dh + dh / 2 + i] = float(std::sin(a));
    }
  rope_rows_inplace(x.data(), rows, stride, H + KV, dh, cos.data(), sin.data());  // q and k heads
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < H + 2 * KV; ++h)
      for (int64_t i = 0; i < dh; ++i) {
        const int64_t at = r * stride + h * dh + i;
        if (h >= H + KV) {  // the v heads stay as they are
          EXPECT_EQ(x[at], orig[at]);
          continue;
        }
        // x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]
        const int64_t half = dh / 2, base = r * stride + h * dh;
        const double rot = i < half ? -double(orig[base + i + half]) : orig[base + i - half];
        const double want = orig[at] * double(cos[r * dh + i]) + rot * sin[r * dh + i];
        EXPECT_NEAR(x[at], want, 1e-5) << r << " " << h << " " << i;
      }
}

}  // namespace
}  // namespace ktl
