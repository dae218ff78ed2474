#include "core/engine/paged_attention.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/engine/kernel_threads.h"
#include "core/kernels/paged_attention_row.h"
#include "core/model/ops.h"

namespace ktl {

namespace {

// Chunks at least this long go through the gather + matmul path under kAuto.
constexpr int kGatherMinTokens = 8;
// Query rows per dense attention call: each holds [H, rows, ctx] fp32 scores a few times over
// (scaled, masked, softmax), so a long prompt's chunk in one call held ~90 KB per prompt token
// (a 401-token prefill on model_small: 34 MiB); 128 rows at a time bounds that by the context.
constexpr int64_t kGatherQueryRows = 128;

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
  auto qs = q.narrow(0, s.row, s.num_tokens).unsqueeze(0);  // [1, T, H, Dh]
  if (s.num_tokens <= kGatherQueryRows)
    return causal_attention(qs, k.unsqueeze(0), v.unsqueeze(0), s.start).squeeze(0);  // [T, H, Dh]
  std::vector<torch::Tensor> parts;
  for (int64_t t0 = 0; t0 < s.num_tokens; t0 += kGatherQueryRows) {
    const int64_t n = std::min<int64_t>(kGatherQueryRows, s.num_tokens - t0);
    const int64_t seen = s.start + t0 + n;  // the keys the chunk's last row sees
    parts.push_back(causal_attention(qs.narrow(1, t0, n), k.narrow(0, 0, seen).unsqueeze(0),
                                     v.narrow(0, 0, seen).unsqueeze(0), s.start + t0)
                        .squeeze(0));  // [n, H, Dh]
  }
  return torch::cat(parts, 0);  // [T, H, Dh]
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
    const PagedAttnShape shape{H, KV, Dh, BS};
    at::parallel_for(0, items, parallel_grain(item_macs), [&](int64_t b, int64_t e) {
      std::vector<float> scores;
      for (int64_t w = b; w < e; ++w) {
        const auto& [s, t] = rows[w / split];
        const int kv0 = split == 1 ? 0 : static_cast<int>(w % split);
        const int kv1 = split == 1 ? KV : kv0 + 1;
        const int64_t row = static_cast<int64_t>(s->row + t) * H * Dh;  // [H, Dh] in q and out
        paged_attention_row(qp + row, op + row, kp, vp, s->block_table.data(), s->start + t, shape,
                            kv0, kv1, scores);
      }
    });
  }
  return out.to(q_in.scalar_type());
}

}  // namespace ktl
