#include "core/engine/paged_attention.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "core/model/ops.h"

namespace ktl {

namespace {

// Chunks at least this long go through the gather + matmul path under kAuto.
constexpr int kGatherMinTokens = 8;

// One (sequence, query head) pair: scores over keys 0..pos for each query row, read in place.
void attend_in_place(const float* q, float* out, const float* kp, const float* vp, const AttnSeq& s,
                     int h, int H, int KV, int Dh, int BS, std::vector<float>& scores) {
  const int kvh = h / (H / KV);
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  for (int t = 0; t < s.num_tokens; ++t) {
    const int pos = s.start + t;
    const float* qr = q + (static_cast<int64_t>(s.row + t) * H + h) * Dh;
    scores.resize(pos + 1);
    float mx = -INFINITY;
    for (int j = 0; j <= pos; ++j) {
      const int64_t slot = static_cast<int64_t>(s.block_table[j / BS]) * BS + j % BS;
      const float* kr = kp + (slot * KV + kvh) * Dh;
      float acc = 0;
      for (int d = 0; d < Dh; ++d) acc += qr[d] * kr[d];
      scores[j] = acc * scale;
      mx = std::max(mx, scores[j]);
    }
    float sum = 0;
    for (int j = 0; j <= pos; ++j) {
      scores[j] = std::exp(scores[j] - mx);
      sum += scores[j];
    }
    const float inv = 1.0f / sum;
    float* o = out + (static_cast<int64_t>(s.row + t) * H + h) * Dh;
    std::fill(o, o + Dh, 0.0f);
    for (int j = 0; j <= pos; ++j) {
      const int64_t slot = static_cast<int64_t>(s.block_table[j / BS]) * BS + j % BS;
      const float* vr = vp + (slot * KV + kvh) * Dh;
      const float p = scores[j] * inv;
      for (int d = 0; d < Dh; ++d) o[d] += p * vr[d];
    }
  }
}

torch::Tensor gather_attention(const torch::Tensor& q, const torch::Tensor& k_pool,
                               const torch::Tensor& v_pool, const AttnSeq& s) {
  const int64_t BS = k_pool.size(1), KV = k_pool.size(2), Dh = k_pool.size(3);
  const int64_t ctx = s.start + s.num_tokens;
  const int64_t nb = (ctx + BS - 1) / BS;
  auto table =
      torch::tensor(std::vector<int64_t>(s.block_table.begin(), s.block_table.begin() + nb));
  auto k = k_pool.index_select(0, table).view({nb * BS, KV, Dh}).narrow(0, 0, ctx);  // [S, KV, Dh]
  auto v = v_pool.index_select(0, table).view({nb * BS, KV, Dh}).narrow(0, 0, ctx);  // [S, KV, Dh]
  auto qs = q.narrow(0, s.row, s.num_tokens).unsqueeze(0);                          // [1, T, H, Dh]
  return causal_attention(qs, k.unsqueeze(0), v.unsqueeze(0), s.start).squeeze(0);  // [T, H, Dh]
}

}  // namespace

PagedKvPool::PagedKvPool(int num_layers, int nb, int bs, int n_kv_heads, int head_dim)
    : num_blocks(nb), block_size(bs) {
  // Uninitialised: attention reads only slots already written, so pages are touched (and count
  // in RSS) only as sequences fill them.
  for (int l = 0; l < num_layers; ++l) {
    k.push_back(torch::empty({nb, bs, n_kv_heads, head_dim}));
    v.push_back(torch::empty({nb, bs, n_kv_heads, head_dim}));
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
  k_pool.view({-1, KV, Dh}).index_copy_(0, slots, k_new.to(k_pool.scalar_type()));
  v_pool.view({-1, KV, Dh}).index_copy_(0, slots, v_new.to(v_pool.scalar_type()));
}

torch::Tensor paged_attention(const torch::Tensor& q_in, const torch::Tensor& k_pool,
                              const torch::Tensor& v_pool, const std::vector<AttnSeq>& seqs,
                              AttnPath path) {
  auto q = q_in.to(torch::kFloat32).contiguous();  // [N, H, Dh]
  auto out = torch::empty_like(q);                 // [N, H, Dh]
  const int H = q.size(1), Dh = q.size(2);
  const int BS = k_pool.size(1), KV = k_pool.size(2);
  std::vector<const AttnSeq*> in_place;
  for (const auto& s : seqs) {
    const bool gather =
        path == AttnPath::kGather || (path == AttnPath::kAuto && s.num_tokens >= kGatherMinTokens);
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
    const int64_t work = static_cast<int64_t>(in_place.size()) * H;
    at::parallel_for(0, work, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scores;
      for (int64_t w = begin; w < end; ++w) {
        attend_in_place(qp, op, kp, vp, *in_place[w / H], static_cast<int>(w % H), H, KV, Dh, BS,
                        scores);
      }
    });
  }
  return out.to(q_in.scalar_type());
}

}  // namespace ktl
