#include "core/kernels/int8_quantize_avx2.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ktl {

#if defined(__x86_64__)
__attribute__((target("avx2"))) float int8_abs_max_avx2(const float* x, int64_t n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
  float lanes[8];
  _mm256_storeu_ps(lanes, m);
  float r = 0;
  for (float v : lanes) r = std::max(r, v);
  for (; i < n; ++i) r = std::max(r, std::fabs(x[i]));
  return r;
}

__attribute__((target("avx2"))) int64_t int8_quantize_avx2(const float* x, int64_t n, float inv,
                                                           int8_t* q, uint8_t* u) {
  const __m256 vinv = _mm256_set1_ps(inv), hi = _mm256_set1_ps(127.0f),
               lo = _mm256_set1_ps(-127.0f);
  // Bytes 0-3 of each 128-bit lane after the two packs: dwords 0 and 4.
  const __m256i gather = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v =
        _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv)));
    const __m256i r = _mm256_cvtps_epi32(v);     // in [-127, 127]: the packs below do not saturate
    const __m256i w = _mm256_packs_epi32(r, r);  // per lane: its 4 values as int16, twice
    const __m256i b = _mm256_packs_epi16(w, w);  // per lane: its 4 values as int8, 4 times
    const uint64_t bytes = static_cast<uint64_t>(
        _mm_cvtsi128_si64(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(b, gather))));
    const uint64_t shifted = bytes ^ 0x8080808080808080ull;  // q + 128 as u8
    std::memcpy(u + i, &shifted, 8);
    if (q) std::memcpy(q + i, &bytes, 8);
  }
  return i;
}
#endif  // __x86_64__

}  // namespace ktl
