#include "core/engine/int8_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/base/cpu_features.h"
#include "core/base/simd_clones.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>
#define KTL_INT8_NEON_DOT 1
#endif

namespace ktl {

namespace {

constexpr int kTileRows = 4;     // weight rows per tile
constexpr int kTileStreams = 4;  // activation rows per tile

// A tile: out[s * R + r] = sum_i x[s, i] * w[r, i] (x: u8 for the VNNI kernels, s8 otherwise).
using TileFn = void (*)(const int8_t* w, int64_t in, const void* x, int64_t xld, int32_t* out);

// out[s * R + r] += sum over columns [i, in): the tail a vector loop leaves, and with i = 0 the
// whole of the scalar kernel. X: uint8_t for the shifted (VNNI) activations, int8_t otherwise.
template <int R, int S, class X>
inline void add_columns(const int8_t* w, int64_t in, const X* x, int64_t xld, int64_t i,
                        int32_t* out) {
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r) {
      int32_t acc = 0;
      for (int64_t k = i; k < in; ++k) acc += int32_t(x[s * xld + k]) * int32_t(w[r * in + k]);
      out[s * R + r] += acc;
    }
}

template <int R, int S>
void tile_scalar(const int8_t* w, int64_t in, const void* xv, int64_t xld, int32_t* out) {
  std::fill(out, out + S * R, 0);
  add_columns<R, S>(w, in, static_cast<const int8_t*>(xv), xld, 0, out);
}

#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

template <int R, int S>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void tile_avx512vnni(
    const int8_t* w, int64_t in, const void* xv, int64_t xld, int32_t* out) {
  const uint8_t* x = static_cast<const uint8_t*>(xv);
  __m512i acc[S][R];
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r) acc[s][r] = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 64 <= in; i += 64) {
    __m512i wv[R];
    for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_si512(w + r * in + i);
    for (int s = 0; s < S; ++s) {
      const __m512i xs = _mm512_loadu_si512(x + s * xld + i);
      for (int r = 0; r < R; ++r) acc[s][r] = _mm512_dpbusd_epi32(acc[s][r], xs, wv[r]);
    }
  }
  if (i < in) {  // masked tail: zero weights contribute nothing
    const __mmask64 m = (~0ULL) >> (64 - (in - i));
    __m512i wv[R];
    for (int r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_epi8(m, w + r * in + i);
    for (int s = 0; s < S; ++s) {
      const __m512i xs = _mm512_maskz_loadu_epi8(m, x + s * xld + i);
      for (int r = 0; r < R; ++r) acc[s][r] = _mm512_dpbusd_epi32(acc[s][r], xs, wv[r]);
    }
  }
  for (int s = 0; s < S; ++s) {
    if constexpr (R == 4) {  // four sums at once: transpose-add within lanes, then across
      const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[s][0], acc[s][1]),
                                           _mm512_unpackhi_epi32(acc[s][0], acc[s][1]));
      const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[s][2], acc[s][3]),
                                           _mm512_unpackhi_epi32(acc[s][2], acc[s][3]));
      const __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23),
                                         _mm512_unpackhi_epi64(s01, s23));  // [r0 r1 r2 r3] x4
      const __m256i h =
          _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1));
      const __m128i q = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + s * R), q);
    } else {
      for (int r = 0; r < R; ++r) out[s * R + r] = _mm512_reduce_add_epi32(acc[s][r]);
    }
  }
}

__attribute__((target("avx2"))) inline int32_t hsum_epi32_avx2(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

template <int R, int S>
__attribute__((target("avx2,avxvnni"))) void tile_avxvnni(const int8_t* w, int64_t in,
                                                          const void* xv, int64_t xld,
                                                          int32_t* out) {
  const uint8_t* x = static_cast<const uint8_t*>(xv);
  __m256i acc[S][R];
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r) acc[s][r] = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= in; i += 32) {
    __m256i wv[R];
    for (int r = 0; r < R; ++r)
      wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * in + i));
    for (int s = 0; s < S; ++s) {
      const __m256i xs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + s * xld + i));
      for (int r = 0; r < R; ++r) acc[s][r] = _mm256_dpbusd_avx_epi32(acc[s][r], xs, wv[r]);
    }
  }
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r) out[s * R + r] = hsum_epi32_avx2(acc[s][r]);
  add_columns<R, S>(w, in, x, xld, i, out);
}

template <int R, int S>
__attribute__((target("avx2"))) void tile_avx2(const int8_t* w, int64_t in, const void* xv,
                                               int64_t xld, int32_t* out) {
  const int8_t* x = static_cast<const int8_t*>(xv);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[S][R];
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r) acc[s][r] = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= in; i += 32) {
    __m256i wv[R], wabs[R];
    for (int r = 0; r < R; ++r) {
      wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * in + i));
      wabs[r] = _mm256_sign_epi8(wv[r], wv[r]);  // |w| as u8 (|-128| = 128 too)
    }
    for (int s = 0; s < S; ++s) {
      const __m256i xs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + s * xld + i));
      for (int r = 0; r < R; ++r) {
        const __m256i p16 = _mm256_maddubs_epi16(wabs[r], _mm256_sign_epi8(xs, wv[r]));
        acc[s][r] = _mm256_add_epi32(acc[s][r], _mm256_madd_epi16(p16, ones));
      }
    }
  }
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r) out[s * R + r] = hsum_epi32_avx2(acc[s][r]);
  add_columns<R, S>(w, in, x, xld, i, out);
}
#pragma GCC diagnostic pop
#endif  // __x86_64__

#if defined(KTL_INT8_NEON_DOT)
template <int R, int S>
void tile_neon_dot(const int8_t* w, int64_t in, const void* xv, int64_t xld, int32_t* out) {
  const int8_t* x = static_cast<const int8_t*>(xv);
  int32x4_t acc[S][R];
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r) acc[s][r] = vdupq_n_s32(0);
  int64_t i = 0;
  for (; i + 16 <= in; i += 16) {
    int8x16_t wv[R];
    for (int r = 0; r < R; ++r) wv[r] = vld1q_s8(w + r * in + i);
    for (int s = 0; s < S; ++s) {
      const int8x16_t xs = vld1q_s8(x + s * xld + i);
      for (int r = 0; r < R; ++r) acc[s][r] = vdotq_s32(acc[s][r], xs, wv[r]);
    }
  }
  for (int s = 0; s < S; ++s)
    for (int r = 0; r < R; ++r) out[s * R + r] = vaddvq_s32(acc[s][r]);
  add_columns<R, S>(w, in, x, xld, i, out);
}
#endif

// tiles[R == kTileRows ? 0 : 1][S - 1]: full tiles and the single-row remainder.
struct TileSet {
  TileFn tiles[2][kTileStreams];
  bool u8;  // activations as q + 128 (subtract 128 * wsum after)
};

#define KTL_TILESET(fn, u8)                                                    \
  TileSet {                                                                    \
    {{fn<kTileRows, 1>, fn<kTileRows, 2>, fn<kTileRows, 3>, fn<kTileRows, 4>}, \
     {fn<1, 1>, fn<1, 2>, fn<1, 3>, fn<1, 4>}},                                \
        u8                                                                     \
  }

const TileSet& tile_set(Int8Kernels k) {
  static const TileSet scalar = KTL_TILESET(tile_scalar, false);
#if defined(__x86_64__)
  static const TileSet avx512 = KTL_TILESET(tile_avx512vnni, true);
  static const TileSet avxvnni = KTL_TILESET(tile_avxvnni, true);
  static const TileSet avx2 = KTL_TILESET(tile_avx2, false);
  if (k == Int8Kernels::kAvx512Vnni) return avx512;
  if (k == Int8Kernels::kAvxVnni) return avxvnni;
  if (k == Int8Kernels::kAvx2) return avx2;
#endif
#if defined(KTL_INT8_NEON_DOT)
  static const TileSet neon = KTL_TILESET(tile_neon_dot, false);
  if (k == Int8Kernels::kNeonDot) return neon;
#endif
  return scalar;
}

}  // namespace

bool int8_kernels_supported(Int8Kernels k) {
  static const CpuFeatures f = detect_cpu_features();
  switch (k) {
    case Int8Kernels::kBest:
    case Int8Kernels::kScalar:
      return true;
    case Int8Kernels::kAvx512Vnni:
      return f.avx512f && f.avx512bw && f.avx512_vnni;
    case Int8Kernels::kAvxVnni:
      return f.avx2 && f.avx_vnni;
    case Int8Kernels::kAvx2:
      return f.avx2;
    case Int8Kernels::kNeonDot:
#if defined(KTL_INT8_NEON_DOT)
      return true;
#else
      return false;
#endif
  }
  return false;
}

Int8Kernels best_int8_kernels() {
  static const Int8Kernels best = [] {
    for (auto k : {Int8Kernels::kAvx512Vnni, Int8Kernels::kAvxVnni, Int8Kernels::kAvx2,
                   Int8Kernels::kNeonDot}) {
      if (int8_kernels_supported(k)) return k;
    }
    return Int8Kernels::kScalar;
  }();
  return best;
}

const char* to_string(Int8Kernels k) {
  switch (k) {
    case Int8Kernels::kBest:
      return to_string(best_int8_kernels());
    case Int8Kernels::kAvx512Vnni:
      return "avx512-vnni";
    case Int8Kernels::kAvxVnni:
      return "avx-vnni";
    case Int8Kernels::kAvx2:
      return "avx2";
    case Int8Kernels::kNeonDot:
      return "neon-dot";
    case Int8Kernels::kScalar:
      return "scalar";
  }
  return "?";
}

namespace {

// max |x| over n floats, in 16 lanes so it vectorises.
float abs_max(const float* x, int64_t n) {
  float m[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) m[l] = std::max(m[l], std::fabs(x[i + l]));
  float r = 0;
  for (int l = 0; l < 16; ++l) r = std::max(r, m[l]);
  for (; i < n; ++i) r = std::max(r, std::fabs(x[i]));
  return r;
}

KTL_SIMD_CLONES void quantize_row(const float* x, int64_t n, float inv, int8_t* q, uint8_t* u) {
  // Adding and subtracting 1.5 * 2^23 rounds to nearest even (|v| <= 127), and vectorises
  // (std::nearbyint is a library call per element).
  constexpr float kMagic = 12582912.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::min(127.0f, std::max(-127.0f, x[i] * inv));
    const int r = static_cast<int>((v + kMagic) - kMagic);
    q[i] = static_cast<int8_t>(r);
    u[i] = static_cast<uint8_t>(r + 128);
  }
}

}  // namespace

Int8Rows quantize_rows_int8(const float* x, int64_t rows, int64_t cols) {
  Int8Rows r;
  r.rows = rows;
  r.cols = cols;
  r.q.resize(rows * cols);
  r.u.resize(rows * cols);
  r.scale.resize(rows);
  for (int64_t n = 0; n < rows; ++n) {
    const float amax = abs_max(x + n * cols, cols);
    const float scale = amax > 0 ? amax / 127.0f : 1.0f;
    quantize_row(x + n * cols, cols, 1.0f / scale, r.q.data() + n * cols, r.u.data() + n * cols);
    r.scale[n] = scale;
  }
  return r;
}

std::vector<int32_t> int8_row_sums(const int8_t* w, int64_t out, int64_t in) {
  std::vector<int32_t> s(out);
  for (int64_t o = 0; o < out; ++o) {
    int32_t t = 0;
    for (int64_t i = 0; i < in; ++i) t += w[o * in + i];
    s[o] = t;
  }
  return s;
}

void int8_dot_s32(Int8Kernels k, const int8_t* w, const int32_t* wsum, int64_t in, int64_t o0,
                  int64_t o1, const Int8Rows& x, int32_t* acc, int64_t ld) {
  if (k == Int8Kernels::kBest) k = best_int8_kernels();
  if (!int8_kernels_supported(k)) throw std::invalid_argument("int8 kernels not supported here");
  if (x.cols != in) throw std::invalid_argument("int8_dot_s32: activation width != in");
  const TileSet& ts = tile_set(k);
  const void* xbase = ts.u8 ? static_cast<const void*>(x.u.data()) : x.q.data();
  int32_t tile[kTileRows * kTileStreams];
  for (int64_t o = o0; o < o1;) {
    const int R = o1 - o >= kTileRows ? kTileRows : 1;
    // Every activation tile over the same weight rows: they stay in L1 after the first.
    for (int64_t n = 0; n < x.rows; n += kTileStreams) {
      const int S = static_cast<int>(std::min<int64_t>(kTileStreams, x.rows - n));
      const auto* xp = static_cast<const uint8_t*>(xbase) + n * in;  // u8 and s8: 1 byte
      ts.tiles[R == kTileRows ? 0 : 1][S - 1](w + o * in, in, xp, in, tile);
      for (int s = 0; s < S; ++s)
        for (int r = 0; r < R; ++r) {
          int32_t v = tile[s * R + r];
          if (ts.u8) v -= 128 * wsum[o + r];
          acc[(n + s) * ld + o + r] = v;
        }
    }
    o += R;
  }
}

void int8_gemm(const int8_t* w, const float* w_scale, const int32_t* wsum, int64_t out, int64_t in,
               const float* x, int64_t n, float* y, Int8Kernels k) {
  const Int8Rows xq = quantize_rows_int8(x, n, in);
  std::vector<int32_t> acc(n * out);  // [n, out]
  // Grain: 64 output rows (a few KB to 128 KB of weights) per task.
  at::parallel_for(0, out, 64, [&](int64_t begin, int64_t end) {
    int8_dot_s32(k, w, wsum, in, begin, end, xq, acc.data(), out);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = begin; o < end; ++o)
        y[r * out + o] = static_cast<float>(acc[r * out + o]) * (xq.scale[r] * w_scale[o]);
  });
}

}  // namespace ktl
