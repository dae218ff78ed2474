#include "core/kernels/paged_attention_row.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/base/simd_clones.h"

namespace ktl {

namespace {

// 16 floats as one value (GCC/Clang vector extension): one zmm with AVX-512, two ymm with AVX2,
// four q registers on NEON, plain code elsewhere; loads through memcpy (unaligned).
// (-Wpsabi: the helpers below are always inlined into the per-ISA copies, so no call passes a
// vector across an ABI boundary.)
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float Vec __attribute__((vector_size(64)));
constexpr int kVec = 16;
inline __attribute__((always_inline)) Vec load_vec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(Vec));
  return v;
}
typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec4 __attribute__((vector_size(16)));
// The sum of a Vec's lanes by halves (8 + 8, 4 + 4, then 4 scalars): register extracts, where
// the lane loop of dot_lanes() went through the stack.
inline __attribute__((always_inline)) float hsum(Vec v) {
  Vec8 a, b;
  std::memcpy(&a, &v, sizeof(Vec8));
  std::memcpy(&b, reinterpret_cast<const char*>(&v) + sizeof(Vec8), sizeof(Vec8));
  a += b;
  Vec4 c, d;
  std::memcpy(&c, &a, sizeof(Vec4));
  std::memcpy(&d, reinterpret_cast<const char*>(&a) + sizeof(Vec4), sizeof(Vec4));
  c += d;
  return (c[0] + c[2]) + (c[1] + c[3]);
}
// dot(a, b) over DH floats (a multiple of kVec), in DH / kVec vector lanes.
template <int DH>
inline __attribute__((always_inline)) float dot_vec(const float* a, const float* b) {
  Vec acc = load_vec(a) * load_vec(b);
  for (int u = 1; u < DH / kVec; ++u) acc += load_vec(a + u * kVec) * load_vec(b + u * kVec);
  return hsum(acc);
}

// out[h, :] = sum_j p[h, j] v[j, :] for NH heads of one KV group at once: each V row is read
// once for the group (a load per vector, NH FMAs), the sums stay in registers.
template <int DH, int NH>
inline __attribute__((always_inline)) void pv_heads(const float* const* sc, float* const* out,
                                                    const float* vp, const int* table, int ctx,
                                                    int BS, int64_t row_stride, int64_t voff) {
  constexpr int kVecs = DH / kVec;
  Vec acc[NH][kVecs];
  for (auto& hv : acc)
    for (auto& a : hv) a = Vec{};
  for (int j0 = 0; j0 < ctx; j0 += BS) {
    const int64_t base = static_cast<int64_t>(table[j0 / BS]) * BS;
    const int n = std::min(BS, ctx - j0);
    for (int j = 0; j < n; ++j) {
      const float* vh = vp + (base + j) * row_stride + voff;
      for (int u = 0; u < kVecs; ++u) {
        const Vec v = load_vec(vh + u * kVec);
        for (int h = 0; h < NH; ++h) acc[h][u] += (Vec{} + sc[h][j0 + j]) * v;
      }
    }
  }
  for (int h = 0; h < NH; ++h)
    for (int u = 0; u < kVecs; ++u) std::memcpy(out[h] + u * kVec, &acc[h][u], sizeof(Vec));
}

// dot(a, b) over n floats in 16 independent lanes, so the compiler vectorises it without
// reassociating one serial reduction (no -ffast-math).
inline __attribute__((always_inline)) float dot_lanes(const float* a, const float* b, int n) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {};
  int d = 0;
  for (; d + kLanes <= n; d += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[d + l] * b[d + l];
  // Tree sum (4 dependent adds, not 16).
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  float t = acc[0];
  for (; d < n; ++d) t += a[d] * b[d];
  return t;
}

// The keys of every KV head at a slot are one contiguous [KV, Dh] row and slots run contiguously
// within a block, so K and V are read in place, block by block, sequentially. scores: [H, ctx].
// DH > 0: head_dim known at compile time, so each head's output accumulates in registers.
template <int DH>
inline __attribute__((always_inline)) void attend_row_t(const float* qr, float* o, const float* kp,
                                                        const float* vp, const int* table, int pos,
                                                        int H, int KV, int dh, int BS, int kv0,
                                                        int kv1, std::vector<float>& scores) {
  const int Dh = DH > 0 ? DH : dh;
  const int G = H / KV, ctx = pos + 1, h0 = kv0 * G, h1 = kv1 * G;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  scores.resize(static_cast<size_t>(H) * ctx);
  for (int j0 = 0; j0 < ctx; j0 += BS) {
    const int64_t base = static_cast<int64_t>(table[j0 / BS]) * BS;
    const int n = std::min(BS, ctx - j0);
    for (int j = 0; j < n; ++j) {
      const float* kr = kp + (base + j) * KV * Dh;  // [KV, Dh]
      for (int h = h0; h < h1; ++h) {
        const float* kh = kr + (h / G) * Dh;
        float dot;
        if constexpr (DH > 0)
          dot = dot_vec<DH>(qr + h * Dh, kh);
        else
          dot = dot_lanes(qr + h * Dh, kh, Dh);
        scores[h * ctx + j0 + j] = dot * scale;
      }
    }
  }
  for (int h = h0; h < h1; ++h) {
    float* sc = scores.data() + static_cast<int64_t>(h) * ctx;
    float mx = -INFINITY;
    for (int j = 0; j < ctx; ++j) mx = std::max(mx, sc[j]);
    float sum = 0;
    for (int j = 0; j < ctx; ++j) {
      sc[j] = std::exp(sc[j] - mx);
      sum += sc[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < ctx; ++j) sc[j] *= inv;
  }
  if constexpr (DH > 0) {
    // The heads of each KV group in passes of up to 4 (4 x DH / 16 accumulators).
    const int64_t row_stride = static_cast<int64_t>(KV) * Dh;
    for (int g = kv0; g < kv1; ++g) {
      for (int hh = g * G; hh < (g + 1) * G; hh += 4) {
        const int nh = std::min(4, (g + 1) * G - hh);
        const float* sc[4];
        float* out[4];
        for (int t = 0; t < nh; ++t) {
          sc[t] = scores.data() + static_cast<int64_t>(hh + t) * ctx;
          out[t] = o + (hh + t) * Dh;
        }
        const int64_t voff = static_cast<int64_t>(g) * Dh;
        switch (nh) {
          case 1:
            pv_heads<DH, 1>(sc, out, vp, table, ctx, BS, row_stride, voff);
            break;
          case 2:
            pv_heads<DH, 2>(sc, out, vp, table, ctx, BS, row_stride, voff);
            break;
          case 3:
            pv_heads<DH, 3>(sc, out, vp, table, ctx, BS, row_stride, voff);
            break;
          default:
            pv_heads<DH, 4>(sc, out, vp, table, ctx, BS, row_stride, voff);
            break;
        }
      }
    }
  } else {
    for (int h = h0; h < h1; ++h) {
      const float* sc = scores.data() + static_cast<int64_t>(h) * ctx;
      const int64_t voff = (h / G) * Dh;
      float* oh = o + h * Dh;
      std::fill(oh, oh + Dh, 0.0f);
      for (int j0 = 0; j0 < ctx; j0 += BS) {
        const int64_t base = static_cast<int64_t>(table[j0 / BS]) * BS;
        const int n = std::min(BS, ctx - j0);
        for (int j = 0; j < n; ++j) {
          const float* vh = vp + (base + j) * KV * Dh + voff;
          const float p = sc[j0 + j];
          for (int d = 0; d < Dh; ++d) oh[d] += p * vh[d];
        }
      }
    }
  }
}

// head_dim 64 and 128 specialised.
KTL_SIMD_BODY void attend_row_body(const float* q, float* out, const float* kp, const float* vp,
                                   const int* table, int pos, int H, int KV, int Dh, int BS,
                                   int kv0, int kv1, std::vector<float>& scores) {
  if (Dh == 64)
    attend_row_t<64>(q, out, kp, vp, table, pos, H, KV, Dh, BS, kv0, kv1, scores);
  else if (Dh == 128)
    attend_row_t<128>(q, out, kp, vp, table, pos, H, KV, Dh, BS, kv0, kv1, scores);
  else
    attend_row_t<0>(q, out, kp, vp, table, pos, H, KV, Dh, BS, kv0, kv1, scores);
}

KTL_SIMD_DISPATCH(void, attend_row,
                  (const float* q, float* out, const float* kp, const float* vp, const int* table,
                   int pos, int H, int KV, int Dh, int BS, int kv0, int kv1,
                   std::vector<float>& scores),
                  (q, out, kp, vp, table, pos, H, KV, Dh, BS, kv0, kv1, scores))

}  // namespace

void paged_attention_row(const float* q, float* out, const float* k_pool, const float* v_pool,
                         const int* block_table, int pos, const PagedAttnShape& shape, int kv0,
                         int kv1, std::vector<float>& scores) {
  attend_row(q, out, k_pool, v_pool, block_table, pos, shape.heads, shape.kv_heads, shape.head_dim,
             shape.block_size, kv0, kv1, scores);
}

}  // namespace ktl
