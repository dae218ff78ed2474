#include "core/kernels/bf16_gemv.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/base/cpu_features.h"
#include "core/kernels/parallel.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace ktl {

namespace {

inline float to_float(uint16_t bf16) {
  const uint32_t bits = uint32_t(bf16) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline float to_float(float v) {
  return v;
}

// One weight row against R activation rows; U chunks per step give R * U independent FMA chains
// (one row alone would otherwise wait on each FMA's latency). Widening bf16 is a zero-extend and
// a 16-bit shift.
#if defined(__x86_64__)
// GCC 12 warns about _mm512_undefined_* inside its own intrinsics when inlined into a target
// function: a false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 16 (AVX-512) or 8 (AVX2) weights as fp32: bf16 widened by a 16-bit shift, fp32 loaded.
__attribute__((target("avx512f"))) inline __m512 load16(const uint16_t* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
__attribute__((target("avx512f"))) inline __m512 load16(const float* p) {
  return _mm512_loadu_ps(p);
}
__attribute__((target("avx2"))) inline __m256 load8(const uint16_t* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}
__attribute__((target("avx2"))) inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}

template <class W, int R, int U>
__attribute__((target("avx512f"))) void rows_dot_avx512(const W* w, const float* x, int64_t in,
                                                        float* out) {
  __m512 acc[R][U];
  for (int n = 0; n < R; ++n)
    for (int u = 0; u < U; ++u) acc[n][u] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 * U <= in; i += 16 * U) {
    for (int u = 0; u < U; ++u) {
      const __m512 wf = load16(w + i + 16 * u);
      for (int n = 0; n < R; ++n)
        acc[n][u] = _mm512_fmadd_ps(wf, _mm512_loadu_ps(x + n * in + i + 16 * u), acc[n][u]);
    }
  }
  for (int n = 0; n < R; ++n) {
    for (int u = 1; u < U; ++u) acc[n][0] = _mm512_add_ps(acc[n][0], acc[n][u]);
    float total = _mm512_reduce_add_ps(acc[n][0]);
    for (int64_t k = i; k < in; ++k) total += to_float(w[k]) * x[n * in + k];
    out[n] = total;
  }
}

// Several activation rows (batched decode, 2-16 rows): tiles of 4 weight rows x S activation
// rows, so every loaded vector feeds 4 FMAs (one weight row at a time reread each activation
// vector, from L2 once 8 rows of a 2048-wide input outgrow L1). 16 named accumulators (GCC kept
// an array of them on the stack); the 4 sums of an activation row are reduced together.
#define KTL_T4_ACC(s) \
  __m512 a##s##0 = _mm512_setzero_ps(), a##s##1 = a##s##0, a##s##2 = a##s##0, a##s##3 = a##s##0
#define KTL_T4_ROW(s)                                   \
  if constexpr (S > s) {                                \
    const __m512 xs = _mm512_loadu_ps(x + s * xld + i); \
    a##s##0 = _mm512_fmadd_ps(w0, xs, a##s##0);         \
    a##s##1 = _mm512_fmadd_ps(w1, xs, a##s##1);         \
    a##s##2 = _mm512_fmadd_ps(w2, xs, a##s##2);         \
    a##s##3 = _mm512_fmadd_ps(w3, xs, a##s##3);         \
  }
#define KTL_T4_STORE(s) \
  if constexpr (S > s) sum4_avx512(a##s##0, a##s##1, a##s##2, a##s##3, out + s * 4);

// out[0..3] = the horizontal sums of a, b, c, d.
__attribute__((target("avx512f"))) inline void sum4_avx512(__m512 a, __m512 b, __m512 c, __m512 d,
                                                           float* out) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512 t = _mm512_add_ps(
      _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
      _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(t),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

// out[s * 4 + r] = sum_i w[r * in + i] * x[s * xld + i], r < 4, s < S.
template <class W, int S>
__attribute__((target("avx512f"))) void tile4_avx512(const W* w, int64_t in, const float* x,
                                                     int64_t xld, float* out) {
  static_assert(S >= 1 && S <= 4);
  KTL_T4_ACC(0);
  KTL_T4_ACC(1);
  KTL_T4_ACC(2);
  KTL_T4_ACC(3);
  int64_t i = 0;
  for (; i + 16 <= in; i += 16) {
    const __m512 w0 = load16(w + i), w1 = load16(w + in + i), w2 = load16(w + 2 * in + i),
                 w3 = load16(w + 3 * in + i);
    KTL_T4_ROW(0)
    KTL_T4_ROW(1)
    KTL_T4_ROW(2)
    KTL_T4_ROW(3)
  }
  KTL_T4_STORE(0)
  KTL_T4_STORE(1)
  KTL_T4_STORE(2)
  KTL_T4_STORE(3)
  for (; i < in; ++i)  // the tail
    for (int s = 0; s < S; ++s)
      for (int r = 0; r < 4; ++r) out[s * 4 + r] += to_float(w[r * in + i]) * x[s * xld + i];
}
#undef KTL_T4_ACC
#undef KTL_T4_ROW
#undef KTL_T4_STORE

template <class W, int R, int U>
__attribute__((target("avx2,fma"))) void rows_dot_avx2(const W* w, const float* x, int64_t in,
                                                       float* out) {
  __m256 acc[R][U];
  for (int n = 0; n < R; ++n)
    for (int u = 0; u < U; ++u) acc[n][u] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 * U <= in; i += 8 * U) {
    for (int u = 0; u < U; ++u) {
      const __m256 wf = load8(w + i + 8 * u);
      for (int n = 0; n < R; ++n)
        acc[n][u] = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + n * in + i + 8 * u), acc[n][u]);
    }
  }
  for (int n = 0; n < R; ++n) {
    for (int u = 1; u < U; ++u) acc[n][0] = _mm256_add_ps(acc[n][0], acc[n][u]);
    float lanes[8];
    _mm256_storeu_ps(lanes, acc[n][0]);
    float total = 0;
    for (float v : lanes) total += v;
    for (int64_t k = i; k < in; ++k) total += to_float(w[k]) * x[n * in + k];
    out[n] = total;
  }
}
#pragma GCC diagnostic pop
#endif

#if defined(__aarch64__)
// 4 weights as fp32: bf16 widened by a 16-bit shift (ushll), fp32 loaded.
inline float32x4_t load4(const uint16_t* p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}
inline float32x4_t load4(const float* p) {
  return vld1q_f32(p);
}

// rows_dot_avx2 on NEON's 4 lanes (32 registers: U = 4 chunks for one row still fit).
template <class W, int R, int U>
void rows_dot_neon(const W* w, const float* x, int64_t in, float* out) {
  float32x4_t acc[R][U];
  for (int n = 0; n < R; ++n)
    for (int u = 0; u < U; ++u) acc[n][u] = vdupq_n_f32(0);
  int64_t i = 0;
  for (; i + 4 * U <= in; i += 4 * U) {
    for (int u = 0; u < U; ++u) {
      const float32x4_t wf = load4(w + i + 4 * u);
      for (int n = 0; n < R; ++n)
        acc[n][u] = vfmaq_f32(acc[n][u], wf, vld1q_f32(x + n * in + i + 4 * u));
    }
  }
  for (int n = 0; n < R; ++n) {
    for (int u = 1; u < U; ++u) acc[n][0] = vaddq_f32(acc[n][0], acc[n][u]);
    float total = vaddvq_f32(acc[n][0]);
    for (int64_t k = i; k < in; ++k) total += to_float(w[k]) * x[n * in + k];
    out[n] = total;
  }
}
#endif

// The portable twin of the kernels above (and the path on other CPUs).
// out[n * ld] = sum_k w[k] x[n * in + k].
template <class W>
void rows_dot_scalar(const W* w, const float* x, int64_t n_rows, int64_t in, float* out,
                     int64_t ld) {
  for (int64_t n = 0; n < n_rows; ++n) {
    float total = 0;
    for (int64_t k = 0; k < in; ++k) total += to_float(w[k]) * x[n * in + k];
    out[n * ld] = total;
  }
}

template <class W>
using RowsDot = void (*)(const W*, const float*, int64_t, float*);

// Activation rows per kernel call (more rows go in several calls over the same, cached, weight
// row): up to 8 keeps every accumulator in registers on AVX2 too.
constexpr int64_t kRowsPerCall = 8;
// From this many rows the AVX-512 path runs 4 x 4 tiles (KTL_GEMV_TILE_MIN_ROWS to measure):
// fp32 2 / 4 / 8 / 16 streams 86 / 140 / 225 / 314 -> 100 / 180 / 291 / 430 tok/s (Intel Xeon).
const int64_t kTileMinRows = [] {
  const char* v = std::getenv("KTL_GEMV_TILE_MIN_ROWS");
  return v ? std::max<int64_t>(1, std::atoll(v)) : int64_t{2};
}();

// The kernel for n_rows (1..kRowsPerCall) rows (null: the scalar loop).
template <class W>
RowsDot<W> pick_kernel(Bf16Kernels set, int64_t n_rows) {
#if defined(__x86_64__)
  static const RowsDot<W> k512[] = {rows_dot_avx512<W, 1, 4>, rows_dot_avx512<W, 2, 2>,
                                    rows_dot_avx512<W, 3, 2>, rows_dot_avx512<W, 4, 1>,
                                    rows_dot_avx512<W, 5, 1>, rows_dot_avx512<W, 6, 1>,
                                    rows_dot_avx512<W, 7, 1>, rows_dot_avx512<W, 8, 1>};
  static const RowsDot<W> k256[] = {rows_dot_avx2<W, 1, 4>, rows_dot_avx2<W, 2, 2>,
                                    rows_dot_avx2<W, 3, 2>, rows_dot_avx2<W, 4, 1>,
                                    rows_dot_avx2<W, 5, 1>, rows_dot_avx2<W, 6, 1>,
                                    rows_dot_avx2<W, 7, 1>, rows_dot_avx2<W, 8, 1>};
  static_assert(sizeof(k512) / sizeof(k512[0]) == kRowsPerCall, "one kernel per row count");
  if (set == Bf16Kernels::kAvx512) return k512[n_rows - 1];
  if (set == Bf16Kernels::kAvx2) return k256[n_rows - 1];
#endif
#if defined(__aarch64__)
  static const RowsDot<W> k128[] = {rows_dot_neon<W, 1, 4>, rows_dot_neon<W, 2, 2>,
                                    rows_dot_neon<W, 3, 2>, rows_dot_neon<W, 4, 2>,
                                    rows_dot_neon<W, 5, 1>, rows_dot_neon<W, 6, 1>,
                                    rows_dot_neon<W, 7, 1>, rows_dot_neon<W, 8, 1>};
  if (set == Bf16Kernels::kNeon) return k128[n_rows - 1];
#endif
  (void)set;
  (void)n_rows;
  return nullptr;
}

// y [N, out] = x [N, in] w [out, in]^T, parallel over output rows; each weight row is read once
// (from memory) for all N rows, in calls of up to kRowsPerCall rows.
template <class W>
void gemv(const W* wp, int64_t out, int64_t in, const float* xp, int64_t N, float* yp,
          Bf16Kernels kernels) {
  if (kernels == Bf16Kernels::kBest) kernels = best_bf16_kernels();
  if (!bf16_kernels_supported(kernels))
    throw std::invalid_argument(std::string("gemv: ") + to_string(kernels) +
                                " kernels do not run on this CPU");
  if (N <= 0 || out <= 0) return;
  const Bf16Kernels set = kernels;
  // 4 x 4 tiles from kTileMinRows rows on (AVX-512); below, one weight row at a time.
  const bool tiles = set == Bf16Kernels::kAvx512 && N >= kTileMinRows;
  parallel_for(0, out, parallel_grain(N * in, 64), [&](int64_t begin, int64_t end) {
    int64_t o = begin;
#if defined(__x86_64__)
    if (tiles) {
      using Tile = void (*)(const W*, int64_t, const float*, int64_t, float*);
      static const Tile fns[] = {tile4_avx512<W, 1>, tile4_avx512<W, 2>, tile4_avx512<W, 3>,
                                 tile4_avx512<W, 4>};
      float t[16];
      for (; o + 4 <= end; o += 4) {
        for (int64_t n = 0; n < N; n += 4) {
          const int64_t S = std::min<int64_t>(4, N - n);
          fns[S - 1](wp + o * in, in, xp + n * in, in, t);
          for (int64_t s = 0; s < S; ++s)
            for (int r = 0; r < 4; ++r) yp[(n + s) * out + o + r] = t[s * 4 + r];
        }
      }
    }
#else
    (void)tiles;
#endif
    float col[kRowsPerCall];  // one output of up to kRowsPerCall rows
    for (; o < end; ++o) {
      for (int64_t n = 0; n < N; n += kRowsPerCall) {
        const int64_t r = std::min(kRowsPerCall, N - n);
        const RowsDot<W> kernel = pick_kernel<W>(set, r);
        if (!kernel) {
          rows_dot_scalar(wp + o * in, xp + n * in, r, in, yp + n * out + o, out);
          continue;
        }
        kernel(wp + o * in, xp + n * in, in, col);
        for (int64_t s = 0; s < r; ++s) yp[(n + s) * out + o] = col[s];
      }
    }
  });
}

}  // namespace

Bf16Kernels best_bf16_kernels() {
  static const Bf16Kernels best = [] {
#if defined(__x86_64__)
    const CpuFeatures f = detect_cpu_features();
    if (f.avx512f) return Bf16Kernels::kAvx512;
    if (f.avx2 && f.fma) return Bf16Kernels::kAvx2;
#elif defined(__aarch64__)
    return Bf16Kernels::kNeon;  // NEON is baseline on AArch64
#endif
    return Bf16Kernels::kScalar;
  }();
  return best;
}

bool bf16_kernels_supported(Bf16Kernels k) {
  const Bf16Kernels best = best_bf16_kernels();
  return k == Bf16Kernels::kBest || k == Bf16Kernels::kScalar || k == best ||
         (k == Bf16Kernels::kAvx2 && best == Bf16Kernels::kAvx512);
}

const char* to_string(Bf16Kernels k) {
  switch (k) {
    case Bf16Kernels::kBest:
      return to_string(best_bf16_kernels());
    case Bf16Kernels::kAvx512:
      return "avx512";
    case Bf16Kernels::kAvx2:
      return "avx2";
    case Bf16Kernels::kNeon:
      return "neon";
    case Bf16Kernels::kScalar:
      return "scalar";
  }
  return "?";
}

void bf16_gemv(const uint16_t* w, int64_t out, int64_t in, const float* x, int64_t n, float* y,
               Bf16Kernels kernels) {
  gemv(w, out, in, x, n, y, kernels);
}

void fp32_gemv(const float* w, int64_t out, int64_t in, const float* x, int64_t n, float* y,
               Bf16Kernels kernels) {
  gemv(w, out, in, x, n, y, kernels);
}

}  // namespace ktl
