#include "core/kernels/int8_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "core/base/cpu_features.h"
#include "core/base/simd_clones.h"
#include "core/kernels/int8_packed_avx2.h"
#include "core/kernels/int8_quantize_avx2.h"
#include "core/kernels/int8_tiles.h"
#include "core/kernels/parallel.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>  // baseline on AArch64 (the quantizer)
#if defined(__ARM_FEATURE_DOTPROD)
#define KTL_INT8_NEON_DOT 1
#endif
#endif

namespace ktl {

namespace {

constexpr int kTileRows = kInt8TileRows;
constexpr int kTileStreams = kInt8TileStreams;
using TileFn = Int8TileFn;  // int8_tiles.h

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
  const int64_t full = in / 64 * 64;
  const __mmask64 tail = in > full ? (~0ULL) >> (64 - (in - full)) : 0;  // zero weights add 0
  if constexpr (S <= 2) {
    // One weight row after the other: a sequential read the prefetchers follow. Reading the R
    // rows side by side streamed 12 GB/s from memory, one after the other 29 GB/s (AMD EPYC
    // Zen 4, one thread, model_small's matrices in huge pages): 1-stream decode reads every
    // weight once and reuses none. The x rows are re-read per weight row, from L1.
    for (int r = 0; r < R; ++r) {
      const int8_t* wr = w + r * in;
      for (int64_t i = 0; i < full; i += 64) {
        const __m512i wv = _mm512_loadu_si512(wr + i);
        for (int s = 0; s < S; ++s)
          acc[s][r] = _mm512_dpbusd_epi32(acc[s][r], _mm512_loadu_si512(x + s * xld + i), wv);
      }
      if (tail) {
        const __m512i wv = _mm512_maskz_loadu_epi8(tail, wr + full);
        for (int s = 0; s < S; ++s)
          acc[s][r] =
              _mm512_dpbusd_epi32(acc[s][r], _mm512_maskz_loadu_epi8(tail, x + s * xld + full), wv);
      }
    }
  } else {
    // Many activation rows: each weight register serves all of them (compute, not the read
    // rate, bounds these).
    for (int64_t i = 0; i < full; i += 64) {
      __m512i wv[R];
      for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_si512(w + r * in + i);
      for (int s = 0; s < S; ++s) {
        const __m512i xs = _mm512_loadu_si512(x + s * xld + i);
        for (int r = 0; r < R; ++r) acc[s][r] = _mm512_dpbusd_epi32(acc[s][r], xs, wv[r]);
      }
    }
    if (tail) {
      __m512i wv[R];
      for (int r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_epi8(tail, w + r * in + full);
      for (int s = 0; s < S; ++s) {
        const __m512i xs = _mm512_maskz_loadu_epi8(tail, x + s * xld + full);
        for (int r = 0; r < R; ++r) acc[s][r] = _mm512_dpbusd_epi32(acc[s][r], xs, wv[r]);
      }
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
  const int64_t i = in / 32 * 32;  // add_columns() takes the rest
  if constexpr (S <= 2) {          // one weight row after the other: see tile_avx512vnni
    for (int r = 0; r < R; ++r)
      for (int64_t k = 0; k < i; k += 32) {
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * in + k));
        for (int s = 0; s < S; ++s) {
          const auto* xp = reinterpret_cast<const __m256i*>(x + s * xld + k);
          acc[s][r] = _mm256_dpbusd_avx_epi32(acc[s][r], _mm256_loadu_si256(xp), wv);
        }
      }
  } else {
    for (int64_t k = 0; k < i; k += 32) {
      __m256i wv[R];
      for (int r = 0; r < R; ++r)
        wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * in + k));
      for (int s = 0; s < S; ++s) {
        const __m256i xs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + s * xld + k));
        for (int r = 0; r < R; ++r) acc[s][r] = _mm256_dpbusd_avx_epi32(acc[s][r], xs, wv[r]);
      }
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
  const int64_t i = in / 32 * 32;  // add_columns() takes the rest
  if constexpr (S <= 2) {          // one weight row after the other: see tile_avx512vnni
    for (int r = 0; r < R; ++r)
      for (int64_t k = 0; k < i; k += 32) {
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * in + k));
        const __m256i wabs = _mm256_sign_epi8(wv, wv);  // |w| as u8 (|-128| = 128 too)
        for (int s = 0; s < S; ++s) {
          const auto* xp = reinterpret_cast<const __m256i*>(x + s * xld + k);
          const __m256i p16 =
              _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(_mm256_loadu_si256(xp), wv));
          acc[s][r] = _mm256_add_epi32(acc[s][r], _mm256_madd_epi16(p16, ones));
        }
      }
  } else {
    for (int64_t k = 0; k < i; k += 32) {
      __m256i wv[R], wabs[R];
      for (int r = 0; r < R; ++r) {
        wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * in + k));
        wabs[r] = _mm256_sign_epi8(wv[r], wv[r]);
      }
      for (int s = 0; s < S; ++s) {
        const __m256i xs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + s * xld + k));
        for (int r = 0; r < R; ++r) {
          const __m256i p16 = _mm256_maddubs_epi16(wabs[r], _mm256_sign_epi8(xs, wv[r]));
          acc[s][r] = _mm256_add_epi32(acc[s][r], _mm256_madd_epi16(p16, ones));
        }
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
  if (k == Int8Kernels::kNeonI8mm && int8_i8mm_tiles()) {  // its own translation unit
    static const TileSet i8mm = [] {
      TileSet t{};
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < kTileStreams; ++b) t.tiles[a][b] = int8_i8mm_tiles()->tiles[a][b];
      t.u8 = false;
      return t;
    }();
    return i8mm;
  }
  return scalar;
}

// ---- Prefill: weight blocks repacked on the fly, an outer-product micro-kernel ----
//
// A block of kPackCols weight rows is copied (per call, into a thread-local buffer) into the VNNI
// layout [k4][kPackCols][4]: the 4 bytes of inputs 4*k4..4*k4+3 of every output row side by side.
// One vpdpbusd of a broadcast activation int32 (4 u8 inputs of one row) with a 64-byte weight
// vector then adds to 16 outputs at once. kPackRows activation rows x kPackCols outputs are
// 6 x 4 zmm accumulators: 24 vpdpbusd per 4 weight loads and 6 broadcasts, no horizontal sums.
// Repacking costs one pass over the block per call, which a prefill's hundreds of rows amortise.
constexpr int kPackCols = 64;  // output rows per packed block (4 zmm of int32 sums)
constexpr int kPackRows = 6;   // activation rows per micro-kernel call (24 accumulators)

// Rows [o, o + cols) of w [out, in] into dst [kPackCols / G][ceil(in / 4)][G][4]: groups of G
// outputs (64 for AVX-512, 32 for AVX-VNNI's 256-bit passes), each contiguous. Missing rows and
// the inputs past `in` are zero, so they add nothing whatever the activations there are.
void pack_vnni_block(const int8_t* w, int64_t in, int64_t o, int cols, int group, int8_t* dst) {
  const int64_t k4 = (in + 3) / 4, full = in / 4;
  auto* d32 = reinterpret_cast<int32_t*>(dst);
  for (int c = 0; c < kPackCols; ++c) {
    int32_t* d = d32 + (c / group) * k4 * group + (c % group);  // element k at d[k * group]
    if (c >= cols) {
      for (int64_t k = 0; k < k4; ++k) d[k * group] = 0;
      continue;
    }
    const int8_t* src = w + (o + c) * in;
    for (int64_t k = 0; k < full; ++k) std::memcpy(&d[k * group], src + 4 * k, 4);
    if (full < k4) {
      int8_t t[4] = {0, 0, 0, 0};
      std::memcpy(t, src + 4 * full, in - 4 * full);
      std::memcpy(&d[full * group], t, 4);
    }
  }
}

// c[m * kPackCols + j] = sum_i x[m, i] * w_block[j, i] for m < M: x u8 (q + 128), rows xld apart.
using PackedFn = void (*)(const int8_t* wp, int64_t in, const uint8_t* x, int64_t xld, int32_t* c);

template <int M>
void packed_scalar(const int8_t* wp, int64_t in, const uint8_t* x, int64_t xld, int32_t* c) {
  std::fill(c, c + M * kPackCols, 0);
  const int64_t k4 = (in + 3) / 4;
  for (int64_t k = 0; k < k4; ++k)
    for (int m = 0; m < M; ++m) {
      // 4 bytes at a time up to ceil(in / 4) * 4, as the SIMD kernels read them (past `in`:
      // the next row or Int8Rows' slack, against zero weights).
      uint8_t ab[4];
      std::memcpy(ab, x + m * xld + 4 * k, 4);
      for (int j = 0; j < kPackCols; ++j) {
        const int8_t* b = wp + (k * kPackCols + j) * 4;
        c[m * kPackCols + j] += ab[0] * b[0] + ab[1] * b[1] + ab[2] * b[2] + ab[3] * b[3];
      }
    }
}

#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The accumulators are 24 named locals: as an array (or by reference) GCC kept a stack copy and
// stored every one of them every step. Activations are read 4 bytes at a time up to
// ceil(in / 4) * 4: past `in` the bytes belong to the next row or Int8Rows' slack, and meet
// zero weights.
#define KTL_PACKED_ACC(m) \
  __m512i c##m##0 = _mm512_setzero_si512(), c##m##1 = c##m##0, c##m##2 = c##m##0, c##m##3 = c##m##0
#define KTL_PACKED_ROW(m)                                                           \
  if constexpr (M > m) {                                                            \
    /* a broadcast load (load port), not a GPR load + vpbroadcastd (vector port) */ \
    const __m512i a = _mm512_broadcastd_epi32(_mm_loadu_si32(x + m * xld + 4 * k)); \
    c##m##0 = _mm512_dpbusd_epi32(c##m##0, a, b0);                                  \
    c##m##1 = _mm512_dpbusd_epi32(c##m##1, a, b1);                                  \
    c##m##2 = _mm512_dpbusd_epi32(c##m##2, a, b2);                                  \
    c##m##3 = _mm512_dpbusd_epi32(c##m##3, a, b3);                                  \
  }
#define KTL_PACKED_STORE(m)                               \
  if constexpr (M > m) {                                  \
    _mm512_storeu_si512(c + m * kPackCols + 0, c##m##0);  \
    _mm512_storeu_si512(c + m * kPackCols + 16, c##m##1); \
    _mm512_storeu_si512(c + m * kPackCols + 32, c##m##2); \
    _mm512_storeu_si512(c + m * kPackCols + 48, c##m##3); \
  }

template <int M>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void packed_avx512vnni(
    const int8_t* wp, int64_t in, const uint8_t* x, int64_t xld, int32_t* c) {
  static_assert(M >= 1 && M <= 6 && kPackRows == 6 && kPackCols == 64);
  KTL_PACKED_ACC(0);
  KTL_PACKED_ACC(1);
  KTL_PACKED_ACC(2);
  KTL_PACKED_ACC(3);
  KTL_PACKED_ACC(4);
  KTL_PACKED_ACC(5);
  const int64_t k4 = (in + 3) / 4;
  for (int64_t k = 0; k < k4; ++k) {
    const int8_t* b = wp + k * kPackCols * 4;
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64),
                  b2 = _mm512_loadu_si512(b + 128), b3 = _mm512_loadu_si512(b + 192);
    KTL_PACKED_ROW(0)
    KTL_PACKED_ROW(1)
    KTL_PACKED_ROW(2)
    KTL_PACKED_ROW(3)
    KTL_PACKED_ROW(4)
    KTL_PACKED_ROW(5)
  }
  KTL_PACKED_STORE(0)
  KTL_PACKED_STORE(1)
  KTL_PACKED_STORE(2)
  KTL_PACKED_STORE(3)
  KTL_PACKED_STORE(4)
  KTL_PACKED_STORE(5)
}
#undef KTL_PACKED_ACC
#undef KTL_PACKED_ROW
#undef KTL_PACKED_STORE
#pragma GCC diagnostic pop

// AVX-VNNI (256-bit, 16 registers): a 64-output block is 8 ymm per step, too many to hold with
// several rows, so a pass covers 2 activation rows x one 32-output half (8 accumulators, 4
// weight vectors, 1 broadcast) and the kernel makes ceil(M / 2) x 2 passes over the block.
template <bool Two>
__attribute__((target("avx2,avxvnni"))) void packed_avxvnni_pass(const int8_t* wp, int64_t k4,
                                                                 const uint8_t* x0,
                                                                 const uint8_t* x1, int32_t* c0,
                                                                 int32_t* c1, bool accumulate) {
  // Zero, or the sums of the previous passes over this half (accumulate).
  const __m256i z = _mm256_setzero_si256();
  auto* v0 = reinterpret_cast<const __m256i*>(c0);
  __m256i c00 = accumulate ? _mm256_loadu_si256(v0) : z,
          c01 = accumulate ? _mm256_loadu_si256(v0 + 1) : z,
          c02 = accumulate ? _mm256_loadu_si256(v0 + 2) : z,
          c03 = accumulate ? _mm256_loadu_si256(v0 + 3) : z;
  __m256i c10 = z, c11 = z, c12 = z, c13 = z;
  if constexpr (Two) {
    if (accumulate) {
      auto* v1 = reinterpret_cast<const __m256i*>(c1);
      c10 = _mm256_loadu_si256(v1);
      c11 = _mm256_loadu_si256(v1 + 1);
      c12 = _mm256_loadu_si256(v1 + 2);
      c13 = _mm256_loadu_si256(v1 + 3);
    }
  }
  for (int64_t k = 0; k < k4; ++k) {
    const int8_t* b = wp + k * 32 * 4;
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)),
                  b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32)),
                  b2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64)),
                  b3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 96));
    const __m256i a0 = _mm256_broadcastd_epi32(_mm_loadu_si32(x0 + 4 * k));
    c00 = _mm256_dpbusd_avx_epi32(c00, a0, b0);
    c01 = _mm256_dpbusd_avx_epi32(c01, a0, b1);
    c02 = _mm256_dpbusd_avx_epi32(c02, a0, b2);
    c03 = _mm256_dpbusd_avx_epi32(c03, a0, b3);
    if constexpr (Two) {
      const __m256i a1 = _mm256_broadcastd_epi32(_mm_loadu_si32(x1 + 4 * k));
      c10 = _mm256_dpbusd_avx_epi32(c10, a1, b0);
      c11 = _mm256_dpbusd_avx_epi32(c11, a1, b1);
      c12 = _mm256_dpbusd_avx_epi32(c12, a1, b2);
      c13 = _mm256_dpbusd_avx_epi32(c13, a1, b3);
    }
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c0), c00);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c0 + 8), c01);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c0 + 16), c02);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c0 + 24), c03);
  if constexpr (Two) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c1), c10);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c1 + 8), c11);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c1 + 16), c12);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c1 + 24), c13);
  }
}

// Inputs per pass: 192 steps x 128 bytes (24 KB) of a half-block stay in L1 across the row pairs
// (down_proj's whole half at in = 2048 is 64 KB).
constexpr int64_t kVnniPassSteps = 192;

template <int M>
void packed_avxvnni(const int8_t* wp, int64_t in, const uint8_t* x, int64_t xld, int32_t* c) {
  const int64_t k4 = (in + 3) / 4;
  for (int h = 0; h < 2; ++h) {
    const int8_t* wh = wp + h * k4 * 32 * 4;  // the half's 32 outputs, packed contiguously
    for (int64_t k0 = 0; k0 < k4; k0 += kVnniPassSteps) {
      const int64_t kn = std::min(kVnniPassSteps, k4 - k0);
      const int8_t* wk = wh + k0 * 32 * 4;
      for (int m = 0; m < M; m += 2) {
        int32_t* c0 = c + m * kPackCols + 32 * h;
        const uint8_t* x0 = x + m * xld + 4 * k0;
        if (m + 1 < M)
          packed_avxvnni_pass<true>(wk, kn, x0, x0 + xld, c0, c0 + kPackCols, k0 > 0);
        else
          packed_avxvnni_pass<false>(wk, kn, x0, nullptr, c0, nullptr, k0 > 0);
      }
    }
  }
}
#endif

#if defined(__x86_64__)
// AVX2: signed activations (q) and the sign trick, in its own file (int8_packed_avx2.h).
template <int M>
void packed_avx2(const int8_t* wp, int64_t in, const uint8_t* x, int64_t xld, int32_t* c) {
  static_assert(kPackCols == kInt8Avx2PackCols);
  int8_packed_avx2(M, wp, in, reinterpret_cast<const int8_t*>(x), xld, c);
}
#endif

struct PackedSet {
  PackedFn fns[kPackRows];  // fns[M - 1]
  int group;                // outputs per contiguous group in the packed block
  bool u8 = true;           // activations as q + 128 (else q: AVX2), 128 * wsum taken off after
};
#define KTL_PACKEDSET(fn, group)                      \
  PackedSet {                                         \
    {fn<1>, fn<2>, fn<3>, fn<4>, fn<5>, fn<6>}, group \
  }

const PackedSet* packed_set(Int8Kernels k) {
  static const PackedSet scalar = KTL_PACKEDSET(packed_scalar, kPackCols);
#if defined(__x86_64__)
  static const PackedSet avx512 = KTL_PACKEDSET(packed_avx512vnni, kPackCols);
  static const PackedSet avxvnni = KTL_PACKEDSET(packed_avxvnni, 32);
  if (k == Int8Kernels::kAvx512Vnni) return &avx512;
  if (k == Int8Kernels::kAvxVnni) return &avxvnni;
  static const PackedSet avx2 = {{packed_avx2<1>, packed_avx2<2>, packed_avx2<3>, packed_avx2<4>,
                                  packed_avx2<5>, packed_avx2<6>},
                                 kInt8Avx2PackGroup,
                                 false};
  if (k == Int8Kernels::kAvx2) return &avx2;
#endif
  if (k == Int8Kernels::kScalar) return &scalar;
  return nullptr;
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
    case Int8Kernels::kNeonDot:  // compiled in (dotprod target) and reported by the CPU
#if defined(KTL_INT8_NEON_DOT)
      return f.neon_dot;
#else
      return false;
#endif
    case Int8Kernels::kNeonI8mm:
      return int8_i8mm_tiles() != nullptr && f.i8mm;
  }
  return false;
}

Int8Kernels best_int8_kernels() {
  static const Int8Kernels best = [] {
    for (auto k : {Int8Kernels::kAvx512Vnni, Int8Kernels::kAvxVnni, Int8Kernels::kAvx2,
                   Int8Kernels::kNeonI8mm, Int8Kernels::kNeonDot}) {
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
    case Int8Kernels::kNeonI8mm:
      return "neon-i8mm";
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

KTL_SIMD_BODY void quantize_row_body(const float* x, int64_t n, float inv, int8_t* q, uint8_t* u) {
  // Adding and subtracting 1.5 * 2^23 rounds to nearest even (|v| <= 127), and vectorises
  // (std::nearbyint is a library call per element).
  constexpr float kMagic = 12582912.0f;
  auto round = [&](int64_t i) {
    const float v = std::min(127.0f, std::max(-127.0f, x[i] * inv));
    return static_cast<int>((v + kMagic) - kMagic);
  };
  if (q) {
    for (int64_t i = 0; i < n; ++i) {
      const int r = round(i);
      q[i] = static_cast<int8_t>(r);
      u[i] = static_cast<uint8_t>(r + 128);
    }
  } else {  // u only (the VNNI prefill)
    for (int64_t i = 0; i < n; ++i) u[i] = static_cast<uint8_t>(round(i) + 128);
  }
}
// Per-ISA copies picked at run time, capped by --kernels (simd_clones.h).
KTL_SIMD_DISPATCH(void, quantize_row, (const float* x, int64_t n, float inv, int8_t* q, uint8_t* u),
                  (x, n, inv, q, u))

#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// quantize_row's twin in AVX-512, bit for bit: the same fp32 multiply and clamp, and vcvtps2dq
// rounds to nearest even as the magic-number trick does. The compiler's clones of the portable
// loops ran ~1.5 ns per element (a 512 x 2048 prefill activation took 1.5 ms).
__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_row_avx512(const float* x,
                                                                              int64_t n, int8_t* q,
                                                                              uint8_t* u,
                                                                              float* scale_out) {
  __m512 m = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
  if (i < n) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, x + i)));
  const float amax = _mm512_reduce_max_ps(m);
  const float scale = amax > 0 ? amax / 127.0f : 1.0f;
  *scale_out = scale;
  const __m512 inv = _mm512_set1_ps(1.0f / scale), hi = _mm512_set1_ps(127.0f),
               lo = _mm512_set1_ps(-127.0f);
  const __m512i shift = _mm512_set1_epi32(128);
  for (i = 0; i < n; i += 16) {
    const __mmask16 k = i + 16 <= n ? static_cast<__mmask16>(0xffff) : tail;
    const __m512 v =
        _mm512_min_ps(hi, _mm512_max_ps(lo, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv)));
    const __m512i r = _mm512_cvtps_epi32(v);
    _mm_mask_storeu_epi8(u + i, k, _mm512_cvtepi32_epi8(_mm512_add_epi32(r, shift)));
    if (q) _mm_mask_storeu_epi8(q + i, k, _mm512_cvtepi32_epi8(r));
  }
}
#pragma GCC diagnostic pop
#endif

#if defined(__aarch64__)
// quantize_row's twin in NEON, bit for bit: the same fp32 multiply and clamp, and fcvtns rounds
// to nearest even as the magic-number trick does; q + 128 is q ^ 0x80 in two's complement.
void quantize_row_neon(const float* x, int64_t n, int8_t* q, uint8_t* u, float* scale_out) {
  float32x4_t m = vdupq_n_f32(0);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + i)));
  float amax = vmaxvq_f32(m);
  for (; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float scale = amax > 0 ? amax / 127.0f : 1.0f;
  *scale_out = scale;
  const float inv_s = 1.0f / scale;
  const float32x4_t inv = vdupq_n_f32(inv_s), hi = vdupq_n_f32(127.0f), lo = vdupq_n_f32(-127.0f);
  auto q4 = [&](int64_t j) {  // 4 values rounded, as int16
    const float32x4_t v = vminq_f32(hi, vmaxq_f32(lo, vmulq_f32(vld1q_f32(x + j), inv)));
    return vmovn_s32(vcvtnq_s32_f32(v));
  };
  for (i = 0; i + 16 <= n; i += 16) {
    const int8x16_t r = vcombine_s8(vmovn_s16(vcombine_s16(q4(i), q4(i + 4))),
                                    vmovn_s16(vcombine_s16(q4(i + 8), q4(i + 12))));
    vst1q_u8(u + i, veorq_u8(vreinterpretq_u8_s8(r), vdupq_n_u8(0x80)));
    if (q) vst1q_s8(q + i, r);
  }
  if (i < n) quantize_row(x + i, n - i, inv_s, q ? q + i : nullptr, u + i);
}
#endif

void quantize_row_portable(const float* x, int64_t n, int8_t* q, uint8_t* u, float* scale_out) {
  const float amax = abs_max(x, n);
  const float scale = amax > 0 ? amax / 127.0f : 1.0f;
  *scale_out = scale;
  quantize_row(x, n, 1.0f / scale, q, u);
}

#if defined(__x86_64__)
// The portable loops' AVX2 twin (int8_quantize_avx2.h), bit for bit.
void quantize_row_avx2(const float* x, int64_t n, int8_t* q, uint8_t* u, float* scale_out) {
  const float amax = int8_abs_max_avx2(x, n);
  const float scale = amax > 0 ? amax / 127.0f : 1.0f;
  *scale_out = scale;
  const float inv = 1.0f / scale;
  const int64_t i = int8_quantize_avx2(x, n, inv, q, u);
  if (i < n) quantize_row(x + i, n - i, inv, q ? q + i : nullptr, u + i);
}
#endif

}  // namespace

Int8Rows quantize_rows_int8(const float* x, int64_t rows, int64_t cols, bool with_signed,
                            bool simd) {
  Int8Rows r;
  r.rows = rows;
  r.cols = cols;
  r.q.resize(with_signed ? rows * cols : 0);
  r.u.resize(rows * cols + 3);  // slack: the packed kernels read 4 bytes at a time
  r.scale.resize(rows);
  auto row_fn = quantize_row_portable;
#if defined(__x86_64__)
  static const bool avx512 = [] {
    const CpuFeatures f = detect_cpu_features();
    return f.avx512f && f.avx512bw && f.avx512vl;
  }();
  static const bool avx2 = detect_cpu_features().avx2;
  if (simd && avx512)
    row_fn = quantize_row_avx512;
  else if (simd && avx2)
    row_fn = quantize_row_avx2;
#elif defined(__aarch64__)
  if (simd) row_fn = quantize_row_neon;
#endif
  // Prefill quantizes hundreds of rows: split them over the threads too.
  parallel_for(0, rows, parallel_grain(cols, 16), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      row_fn(x + n * cols, cols, with_signed ? r.q.data() + n * cols : nullptr,
             r.u.data() + n * cols, &r.scale[n]);
  });
  return r;
}

const char* int8_quantizer() {
#if defined(__x86_64__)
  const CpuFeatures f = detect_cpu_features();
  return f.avx512f && f.avx512bw && f.avx512vl ? "avx512" : f.avx2 ? "avx2" : "portable";
#elif defined(__aarch64__)
  return "neon";
#else
  return "portable";
#endif
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
  // From 3 activation rows the tiles read their weight rows side by side, a pattern the
  // prefetchers do not follow: ask for the tile two ahead (contiguous bytes) into L2 while this
  // one computes. Model_small's matrices from memory, one thread (AMD EPYC Zen 4): 4 rows
  // 11.2 -> 5.1 ms, 16 rows 18.9 -> 15.2 ms; into L1 it evicted the activations at 16 rows.
  constexpr int64_t kPrefetchTiles = 2;
  const bool prefetch = x.rows >= 3;
  for (int64_t o = o0; o < o1;) {
    const int R = o1 - o >= kTileRows ? kTileRows : 1;
    if (prefetch && o + (kPrefetchTiles + 1) * kTileRows <= o1) {
      const int8_t* ahead = w + (o + kPrefetchTiles * kTileRows) * in;
      for (int64_t b = 0; b < kTileRows * in; b += 64) __builtin_prefetch(ahead + b, 0, 1);
    }
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

bool int8_packed_supported(Int8Kernels k) {
  if (k == Int8Kernels::kBest) k = best_int8_kernels();
  return packed_set(k) != nullptr && int8_kernels_supported(k);
}

namespace {

// The packed kernels over output rows [o0, o1): emit(row, o, cols, sums) gets each row's exact
// int32 sums for outputs [o, o + cols), the u8 shift already taken off. (For AVX-512, splitting
// `in` into L1-sized passes over the block measured no faster on model_small's shapes; the
// AVX-VNNI kernel splits inside, see kVnniPassSteps.)
template <class Emit>
void run_packed(const PackedSet& ps, const int8_t* w, const int32_t* wsum, int64_t in, int64_t o0,
                int64_t o1, const Int8Rows& x, Emit&& emit) {
  // Per thread, reused across calls: one packed block (64 x in bytes, 128 KB at in = 2048).
  thread_local std::vector<int8_t> block;
  block.resize(static_cast<size_t>((in + 3) / 4) * 4 * kPackCols);
  int32_t c[kPackRows * kPackCols];
  for (int64_t o = o0; o < o1; o += kPackCols) {
    const int cols = static_cast<int>(std::min<int64_t>(kPackCols, o1 - o));
    pack_vnni_block(w, in, o, cols, ps.group, block.data());
    for (int64_t n = 0; n < x.rows; n += kPackRows) {
      const int M = static_cast<int>(std::min<int64_t>(kPackRows, x.rows - n));
      const uint8_t* xm =
          ps.u8 ? x.u.data() + n * in : reinterpret_cast<const uint8_t*>(x.q.data() + n * in);
      ps.fns[M - 1](block.data(), in, xm, in, c);
      for (int m = 0; m < M; ++m) {
        int32_t* cm = c + m * kPackCols;
        if (ps.u8)
          for (int j = 0; j < cols; ++j) cm[j] -= 128 * wsum[o + j];
        emit(n + m, o, cols, cm);
      }
    }
  }
}

const PackedSet& checked_packed_set(Int8Kernels k, int64_t in, const Int8Rows& x) {
  if (!int8_packed_supported(k)) throw std::invalid_argument("packed int8 kernels not supported");
  if (x.cols != in) throw std::invalid_argument("int8_dot_s32_packed: activation width != in");
  const PackedSet& ps = *packed_set(k);
  if (ps.u8 && static_cast<int64_t>(x.u.size()) < x.rows * in + 3)
    throw std::invalid_argument("int8_dot_s32_packed: activations without their 3 bytes of slack");
  if (!ps.u8 && static_cast<int64_t>(x.q.size()) < x.rows * in)
    throw std::invalid_argument("int8_dot_s32_packed: AVX2 needs the signed activations");
  return ps;
}

}  // namespace

void int8_dot_s32_packed(Int8Kernels k, const int8_t* w, const int32_t* wsum, int64_t in,
                         int64_t o0, int64_t o1, const Int8Rows& x, int32_t* acc, int64_t ld) {
  if (k == Int8Kernels::kBest) k = best_int8_kernels();
  run_packed(checked_packed_set(k, in, x), w, wsum, in, o0, o1, x,
             [&](int64_t n, int64_t o, int cols, const int32_t* sums) {
               std::copy(sums, sums + cols, acc + n * ld + o);
             });
}

bool int8_gemm_packed(Int8Kernels k, int64_t n) {
  if (k == Int8Kernels::kBest) k = best_int8_kernels();
  return n >= kInt8PackedMinRows && int8_packed_supported(k);
}

bool int8_gemm_needs_signed(Int8Kernels k, int64_t n) {
  if (k == Int8Kernels::kBest) k = best_int8_kernels();
  // The VNNI kernels read only the u8 form: no signed copy for them.
  return int8_gemm_packed(k, n) ? !packed_set(k)->u8 : !tile_set(k).u8;
}

void int8_gemm_quantized(const int8_t* w, const float* w_scale, const int32_t* wsum, int64_t out,
                         int64_t in, const Int8Rows& xq, float* y, Int8Kernels k) {
  if (k == Int8Kernels::kBest) k = best_int8_kernels();
  const int64_t n = xq.rows;
  if (int8_gemm_packed(k, n)) {
    // Prefill: the sums go straight to y, scaled (no [n, out] int32 buffer).
    const PackedSet& ps = checked_packed_set(k, in, xq);
    // Whole blocks per task (a split block would be packed twice).
    const int64_t grain =
        (parallel_grain(n * in, kPackCols) + kPackCols - 1) / kPackCols * kPackCols;
    parallel_for(0, out, grain, [&](int64_t begin, int64_t end) {
      run_packed(ps, w, wsum, in, begin, end, xq,
                 [&](int64_t r, int64_t o, int cols, const int32_t* sums) {
                   const float sx = xq.scale[r];
                   float* yr = y + r * out + o;
                   for (int j = 0; j < cols; ++j)
                     yr[j] = static_cast<float>(sums[j]) * (sx * w_scale[o + j]);
                 });
    });
    return;
  }
  // [n, out], uninitialised: every element is written before it is read (a zeroed vector cost a
  // serial memset of 2 MB per 16-row step for model_small's head alone).
  std::unique_ptr<int32_t[]> acc(new int32_t[static_cast<size_t>(n * out)]);
  // Grain: at least 64 output rows (a few KB to 128 KB of weights), and enough work per task.
  parallel_for(0, out, parallel_grain(n * in, 64), [&](int64_t begin, int64_t end) {
    int8_dot_s32(k, w, wsum, in, begin, end, xq, acc.get(), out);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = begin; o < end; ++o)
        y[r * out + o] = static_cast<float>(acc[r * out + o]) * (xq.scale[r] * w_scale[o]);
  });
}

void int8_gemm(const int8_t* w, const float* w_scale, const int32_t* wsum, int64_t out, int64_t in,
               const float* x, int64_t n, float* y, Int8Kernels k) {
  if (k == Int8Kernels::kBest) k = best_int8_kernels();
  const Int8Rows xq = quantize_rows_int8(x, n, in, int8_gemm_needs_signed(k, n));
  int8_gemm_quantized(w, w_scale, wsum, out, in, xq, y, k);
}

}  // namespace ktl
