#include "core/kernels/paged_attention_row.h"

#include <algorithm>
#include <cmath>

#include "core/base/simd_clones.h"

namespace ktl {

namespace {

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
      for (int h = h0; h < h1; ++h)
        scores[h * ctx + j0 + j] = dot_lanes(qr + h * Dh, kr + (h / G) * Dh, Dh) * scale;
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
  for (int h = h0; h < h1; ++h) {
    const float* sc = scores.data() + static_cast<int64_t>(h) * ctx;
    const int64_t voff = (h / G) * Dh;
    float* oh = o + h * Dh;
    // With DH known the sum stays in registers (a local array); otherwise it goes straight to
    // the output row.
    float local[DH > 0 ? DH : 1];
    float* acc = DH > 0 ? local : oh;
    std::fill(acc, acc + Dh, 0.0f);
    for (int j0 = 0; j0 < ctx; j0 += BS) {
      const int64_t base = static_cast<int64_t>(table[j0 / BS]) * BS;
      const int n = std::min(BS, ctx - j0);
      for (int j = 0; j < n; ++j) {
        const float* vh = vp + (base + j) * KV * Dh + voff;
        const float p = sc[j0 + j];
        for (int d = 0; d < Dh; ++d) acc[d] += p * vh[d];
      }
    }
    if constexpr (DH > 0) std::copy(acc, acc + Dh, oh);
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
