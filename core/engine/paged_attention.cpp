#include "core/engine/paged_attention.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/base/simd_clones.h"
#include "core/engine/kernel_threads.h"
#include "core/model/ops.h"

namespace ktl {

namespace {

// Chunks at least this long go through the gather + matmul path under kAuto.
constexpr int kGatherMinTokens = 8;

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

// One query row of one sequence, the query heads of KV heads [kv0, kv1): the keys of every KV
// head at a slot are one contiguous [KV, Dh] row and slots run contiguously within a block, so K
// and V are read in place, block by block through the block table (no dense copy), sequentially,
// and each K/V row once for all query heads of its GQA group. scores: [H, pos + 1].
// DH > 0: head_dim known at compile time, so each head's output accumulates in registers.
template <int DH>
inline __attribute__((always_inline)) void attend_row_t(const float* q, float* out, const float* kp,
                                                        const float* vp, const AttnSeq& s, int t,
                                                        int H, int KV, int dh, int BS, int kv0,
                                                        int kv1, std::vector<float>& scores) {
  const int Dh = DH > 0 ? DH : dh;
  const int G = H / KV, pos = s.start + t, ctx = pos + 1, h0 = kv0 * G, h1 = kv1 * G;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  const float* qr = q + static_cast<int64_t>(s.row + t) * H * Dh;  // [H, Dh]
  float* o = out + static_cast<int64_t>(s.row + t) * H * Dh;       // [H, Dh]
  scores.resize(static_cast<size_t>(H) * ctx);
  for (int j0 = 0; j0 < ctx; j0 += BS) {
    const int64_t base = static_cast<int64_t>(s.block_table[j0 / BS]) * BS;
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
      const int64_t base = static_cast<int64_t>(s.block_table[j0 / BS]) * BS;
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

// Cloned for AVX-512/AVX2 and picked at load time; head_dim 64 and 128 specialised.
KTL_SIMD_CLONES void attend_row(const float* q, float* out, const float* kp, const float* vp,
                                const AttnSeq& s, int t, int H, int KV, int Dh, int BS, int kv0,
                                int kv1, std::vector<float>& scores) {
  if (Dh == 64)
    attend_row_t<64>(q, out, kp, vp, s, t, H, KV, Dh, BS, kv0, kv1, scores);
  else if (Dh == 128)
    attend_row_t<128>(q, out, kp, vp, s, t, H, KV, Dh, BS, kv0, kv1, scores);
  else
    attend_row_t<0>(q, out, kp, vp, s, t, H, KV, Dh, BS, kv0, kv1, scores);
}

torch::Tensor gather_attention(const torch::Tensor& q, const torch::Tensor& k_pool,
                               const torch::Tensor& v_pool, const AttnSeq& s) {
  const int64_t BS = k_pool.size(1), KV = k_pool.size(2), Dh = k_pool.size(3);
  const int64_t ctx = s.start + s.num_tokens;
  const int64_t nb = (ctx + BS - 1) / BS;
  auto table =
      torch::tensor(std::vector<int64_t>(s.block_table.begin(), s.block_table.begin() + nb))
          .to(k_pool.device());                                                      // [nb]
  auto k = k_pool.index_select(0, table).view({nb * BS, KV, Dh}).narrow(0, 0, ctx);  // [S, KV, Dh]
  auto v = v_pool.index_select(0, table).view({nb * BS, KV, Dh}).narrow(0, 0, ctx);  // [S, KV, Dh]
  auto qs = q.narrow(0, s.row, s.num_tokens).unsqueeze(0);                          // [1, T, H, Dh]
  return causal_attention(qs, k.unsqueeze(0), v.unsqueeze(0), s.start).squeeze(0);  // [T, H, Dh]
}

}  // namespace

PagedKvPool::PagedKvPool(int num_layers, int nb, int bs, int n_kv_heads, int head_dim,
                         torch::Device device)
    : num_blocks(nb), block_size(bs) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // Uninitialised: attention reads only slots already written, so pages are touched (and count
  // in RSS) only as sequences fill them.
  for (int l = 0; l < num_layers; ++l) {
    k.push_back(torch::empty({nb, bs, n_kv_heads, head_dim}, opts));
    v.push_back(torch::empty({nb, bs, n_kv_heads, head_dim}, opts));
  }
}

int64_t PagedKvPool::bytes_per_block(int num_layers, int block_size, int n_kv_heads, int head_dim) {
  return 2LL * num_layers * block_size * n_kv_heads * head_dim *
         static_cast<int64_t>(sizeof(float));
}

torch::Tensor compute_slots(const std::vector<AttnSeq>& seqs, int block_size) {
  std::vector<int64_t> slots;
  for (const auto& s : seqs) {
    for (int t = 0; t < s.num_tokens; ++t) {
      const int pos = s.start + t;
      slots.push_back(static_cast<int64_t>(s.block_table.at(pos / block_size)) * block_size +
                      pos % block_size);
    }
  }
  return torch::tensor(slots, torch::kLong);
}

void write_kv(torch::Tensor& k_pool, torch::Tensor& v_pool, const torch::Tensor& slots,
              const torch::Tensor& k_new, const torch::Tensor& v_new) {
  const int64_t KV = k_pool.size(2), Dh = k_pool.size(3);
  auto idx = slots.to(k_pool.device());  // [N]
  k_pool.view({-1, KV, Dh}).index_copy_(0, idx, k_new.to(k_pool.scalar_type()));
  v_pool.view({-1, KV, Dh}).index_copy_(0, idx, v_new.to(v_pool.scalar_type()));
}

torch::Tensor paged_attention(const torch::Tensor& q_in, const torch::Tensor& k_pool,
                              const torch::Tensor& v_pool, const std::vector<AttnSeq>& seqs,
                              AttnPath path) {
  auto q = q_in.to(torch::kFloat32).contiguous();  // [N, H, Dh]
  auto out = torch::empty_like(q);                 // [N, H, Dh]
  const int H = q.size(1), Dh = q.size(2);
  const int BS = k_pool.size(1), KV = k_pool.size(2);
  // The kernel reads host memory: a pool on another device takes the gather path.
  const bool on_cpu = k_pool.is_cpu() && q.is_cpu();
  if (!on_cpu && path == AttnPath::kKernel)
    throw std::invalid_argument("paged_attention: the kernel path needs a CPU KV pool");
  std::vector<const AttnSeq*> in_place;
  for (const auto& s : seqs) {
    const bool gather = !on_cpu || path == AttnPath::kGather ||
                        (path == AttnPath::kAuto && s.num_tokens >= kGatherMinTokens);
    if (gather) {
      out.narrow(0, s.row, s.num_tokens).copy_(gather_attention(q, k_pool, v_pool, s));
    } else {
      in_place.push_back(&s);
    }
  }
  if (!in_place.empty()) {
    auto kc = k_pool.contiguous(), vc = v_pool.contiguous();
    const float* qp = q.data_ptr<float>();
    const float* kp = kc.data_ptr<float>();
    const float* vp = vc.data_ptr<float>();
    float* op = out.data_ptr<float>();
    // Work items: (sequence, query row), or (sequence, query row, KV head) when there are too
    // few rows to keep every thread busy (one decoding stream).
    std::vector<std::pair<const AttnSeq*, int>> rows;
    for (const AttnSeq* s : in_place)
      for (int t = 0; t < s->num_tokens; ++t) rows.emplace_back(s, t);
    const int split = static_cast<int64_t>(rows.size()) < 2 * at::get_num_threads() ? KV : 1;
    // Work per item: its query heads over the context (q.k and p.v), averaged over the items.
    int64_t ctx_sum = 0;
    for (const auto& [s, t] : rows) ctx_sum += s->start + t + 1;
    const int64_t item_macs =
        2 * ctx_sum / static_cast<int64_t>(rows.size()) * Dh * H / KV * (split == 1 ? KV : 1);
    const int64_t items = static_cast<int64_t>(rows.size()) * split;
    at::parallel_for(0, items, parallel_grain(item_macs), [&](int64_t b, int64_t e) {
      std::vector<float> scores;
      for (int64_t w = b; w < e; ++w) {
        const auto& [s, t] = rows[w / split];
        const int kv0 = split == 1 ? 0 : static_cast<int>(w % split);
        const int kv1 = split == 1 ? KV : kv0 + 1;
        attend_row(qp, op, kp, vp, *s, t, H, KV, Dh, BS, kv0, kv1, scores);
      }
    });
  }
  return out.to(q_in.scalar_type());
}

}  // namespace ktl
