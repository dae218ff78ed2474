#include "core/kernels/int8_packed_avx2.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ktl {

#if defined(__x86_64__)
namespace {

// Inputs per pass: 192 steps x 128 bytes (24 KB) of a 32-output group stay in L1 across the row
// pairs (a whole group at in = 2048 is 64 KB); as the AVX-VNNI kernel does.
constexpr int64_t kPassSteps = 192;
constexpr int kStepBytes = kInt8Avx2PackGroup * 4;  // one step: 4 inputs of 32 outputs

// acc += 4-input dot products of 8 outputs: |w| (u8) x (q with w's sign) (s8), pairs to int32.
#define KTL_AVX2_MAC(acc, a, wabs, w) \
  acc = _mm256_add_epi32(             \
      acc, _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(a, w)), ones))

// One step (4 inputs) of 32 outputs: 4 weight vectors, each [8 outputs][4 inputs].
#define KTL_AVX2_STEP(b, a0, a1)                                                                \
  {                                                                                             \
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)),                 \
                  w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>((b) + 32)),          \
                  w2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>((b) + 64)),          \
                  w3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>((b) + 96));          \
    const __m256i s0 = _mm256_abs_epi8(w0), s1 = _mm256_abs_epi8(w1), s2 = _mm256_abs_epi8(w2), \
                  s3 = _mm256_abs_epi8(w3); /* -128 -> 128 */                                   \
    KTL_AVX2_MAC(c00, a0, s0, w0);                                                              \
    KTL_AVX2_MAC(c01, a0, s1, w1);                                                              \
    KTL_AVX2_MAC(c02, a0, s2, w2);                                                              \
    KTL_AVX2_MAC(c03, a0, s3, w3);                                                              \
    if constexpr (Two) {                                                                        \
      KTL_AVX2_MAC(c10, a1, s0, w0);                                                            \
      KTL_AVX2_MAC(c11, a1, s1, w1);                                                            \
      KTL_AVX2_MAC(c12, a1, s2, w2);                                                            \
      KTL_AVX2_MAC(c13, a1, s3, w3);                                                            \
    }                                                                                           \
  }

inline int32_t load4(const int8_t* p, int bytes) {  // bytes < 4: the rest are zero
  int32_t v = 0;
  std::memcpy(&v, p, bytes);
  return v;
}

// One pass: 1 or 2 activation rows x 32 outputs over `steps` whole steps and, when tail > 0, one
// last step of `tail` inputs. c0 / c1 hold zero or, with accumulate, the previous passes' sums.
template <bool Two>
__attribute__((target("avx2"))) void pass(const int8_t* wp, int64_t steps, int tail,
                                          const int8_t* x0, const int8_t* x1, int32_t* c0,
                                          int32_t* c1, bool accumulate) {
  const __m256i ones = _mm256_set1_epi16(1), z = _mm256_setzero_si256();
  auto* v0 = reinterpret_cast<__m256i*>(c0);
  __m256i c00 = accumulate ? _mm256_loadu_si256(v0) : z,
          c01 = accumulate ? _mm256_loadu_si256(v0 + 1) : z,
          c02 = accumulate ? _mm256_loadu_si256(v0 + 2) : z,
          c03 = accumulate ? _mm256_loadu_si256(v0 + 3) : z;
  __m256i c10 = z, c11 = z, c12 = z, c13 = z;
  auto* v1 = reinterpret_cast<__m256i*>(c1);
  if constexpr (Two) {
    if (accumulate) {
      c10 = _mm256_loadu_si256(v1);
      c11 = _mm256_loadu_si256(v1 + 1);
      c12 = _mm256_loadu_si256(v1 + 2);
      c13 = _mm256_loadu_si256(v1 + 3);
    }
  }
  for (int64_t k = 0; k < steps; ++k) {
    const int8_t* b = wp + k * kStepBytes;
    const __m256i a0 = _mm256_set1_epi32(load4(x0 + 4 * k, 4));
    const __m256i a1 = Two ? _mm256_set1_epi32(load4(x1 + 4 * k, 4)) : z;
    KTL_AVX2_STEP(b, a0, a1)
  }
  if (tail > 0) {  // zero activations past `in` (the packed weights there are zero too)
    const int8_t* b = wp + steps * kStepBytes;
    const __m256i a0 = _mm256_set1_epi32(load4(x0 + 4 * steps, tail));
    const __m256i a1 = Two ? _mm256_set1_epi32(load4(x1 + 4 * steps, tail)) : z;
    KTL_AVX2_STEP(b, a0, a1)
  }
  _mm256_storeu_si256(v0, c00);
  _mm256_storeu_si256(v0 + 1, c01);
  _mm256_storeu_si256(v0 + 2, c02);
  _mm256_storeu_si256(v0 + 3, c03);
  if constexpr (Two) {
    _mm256_storeu_si256(v1, c10);
    _mm256_storeu_si256(v1 + 1, c11);
    _mm256_storeu_si256(v1 + 2, c12);
    _mm256_storeu_si256(v1 + 3, c13);
  }
}
#undef KTL_AVX2_STEP
#undef KTL_AVX2_MAC

}  // namespace

void int8_packed_avx2(int M, const int8_t* wp, int64_t in, const int8_t* x, int64_t xld,
                      int32_t* c) {
  const int64_t k4 = (in + 3) / 4, full = in / 4;
  const int tail = static_cast<int>(in % 4);
  for (int h = 0; h < kInt8Avx2PackCols / kInt8Avx2PackGroup; ++h) {
    const int8_t* wh = wp + h * k4 * kStepBytes;  // the group's 32 outputs, contiguous
    for (int64_t k0 = 0; k0 < k4; k0 += kPassSteps) {
      const int64_t kn = std::min(kPassSteps, k4 - k0);
      const int64_t steps = std::min(k0 + kn, full) - k0;  // whole steps in this slice
      const int t = k0 + kn > full ? tail : 0;             // and the last, partial one
      for (int m = 0; m < M; m += 2) {
        int32_t* c0 = c + m * kInt8Avx2PackCols + kInt8Avx2PackGroup * h;
        const int8_t* x0 = x + m * xld + 4 * k0;
        if (m + 1 < M)
          pass<true>(wh + k0 * kStepBytes, steps, t, x0, x0 + xld, c0, c0 + kInt8Avx2PackCols,
                     k0 > 0);
        else
          pass<false>(wh + k0 * kStepBytes, steps, t, x0, nullptr, c0, nullptr, k0 > 0);
      }
    }
  }
}
#endif  // __x86_64__

}  // namespace ktl
