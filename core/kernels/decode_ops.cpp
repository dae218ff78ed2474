#include "core/kernels/decode_ops.h"

#include <cmath>

namespace ktl {

void rms_norm_rows(const float* x, const float* w, int64_t rows, int64_t d, float eps, float* y) {
  constexpr int kLanes = 16;  // independent partial sums: the loop vectorises without -ffast-math
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= d; i += kLanes)
      for (int l = 0; l < kLanes; ++l) acc[l] += xr[i + l] * xr[i + l];
    for (int width = kLanes / 2; width > 0; width /= 2)
      for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
    float ss = acc[0];
    for (; i < d; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    float* yr = y + r * d;
    for (int64_t j = 0; j < d; ++j) yr[j] = xr[j] * inv * w[j];
  }
}

void rope_rows_inplace(float* x, int64_t rows, int64_t row_stride, int64_t heads, int64_t dh,
                       const float* cos, const float* sin) {
  const int64_t half = dh / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cos + r * dh;
    const float* s = sin + r * dh;
    for (int64_t h = 0; h < heads; ++h) {
      float* x1 = x + r * row_stride + h * dh;  // [half]
      float* x2 = x1 + half;                    // [half]
      for (int64_t i = 0; i < half; ++i) {
        const float a = x1[i], b = x2[i];
        x1[i] = a * c[i] - b * s[i];
        x2[i] = b * c[half + i] + a * s[half + i];
      }
    }
  }
}

}  // namespace ktl
