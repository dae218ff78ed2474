#include "core/model/ops.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

namespace ktl {

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto xf = x.to(torch::kFloat32);
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);  // [..., D]
  return (normed * weight.to(torch::kFloat32)).to(x.scalar_type());
}

std::pair<torch::Tensor, torch::Tensor> rope_cos_sin(const torch::Tensor& positions,
                                                     int64_t head_dim, double theta,
                                                     torch::ScalarType dtype) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(positions.device());
  auto idx = torch::arange(0, head_dim, 2, opts);                                   // [Dh/2]
  auto inv_freq = torch::pow(theta, -idx / static_cast<double>(head_dim));          // [Dh/2]
  auto freqs = positions.to(torch::kFloat64).unsqueeze(1) * inv_freq.unsqueeze(0);  // [N, Dh/2]
  auto emb = torch::cat({freqs, freqs}, -1);                                        // [N, Dh]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos,
                         const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);                 // [..., N, heads, Dh/2]
  auto x2 = x.narrow(-1, half, half);              // [..., N, heads, Dh/2]
  auto rotated = torch::cat({-x2, x1}, -1);        // [..., N, heads, Dh]
  auto c = cos.unsqueeze(-2).to(x.scalar_type());  // [N, 1, Dh]
  auto s = sin.unsqueeze(-2).to(x.scalar_type());  // [N, 1, Dh]
  return x * c + rotated * s;
}

torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up) {
  return torch::silu(gate) * up;
}

torch::Tensor repeat_kv(const torch::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  const auto B = x.size(0), S = x.size(1), KV = x.size(2), Dh = x.size(3);
  return x.unsqueeze(3).expand({B, S, KV, n_rep, Dh}).reshape({B, S, KV * n_rep, Dh});
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, int64_t q_offset) {
  const auto T = q.size(1), H = q.size(2), Dh = q.size(3), S = k.size(1);
  const int64_t n_rep = H / k.size(2);
  auto qh = q.transpose(1, 2);                    // [B, H, T, Dh]
  auto kh = repeat_kv(k, n_rep).transpose(1, 2);  // [B, H, S, Dh]
  auto vh = repeat_kv(v, n_rep).transpose(1, 2);  // [B, H, S, Dh]
#if TORCH_VERSION_MAJOR >= 2
  // LibTorch 2.x on a GPU: fused (flash / memory-efficient) attention for the plain causal case.
  // CPU keeps the explicit path below, the one this project's CI tests (on 1.13).
  if (!q.is_cpu() && q_offset == 0 && T == S)
    return at::scaled_dot_product_attention(qh, kh, vh, {}, 0.0, /*is_causal=*/true)
        .transpose(1, 2);  // [B, T, H, Dh]
#endif
  auto scores =
      torch::matmul(qh, kh.transpose(-2, -1)) / std::sqrt(static_cast<double>(Dh));  // [B, H, T, S]
  auto qpos =
      torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(q.device())) + q_offset;
  auto kpos = torch::arange(S, torch::TensorOptions().dtype(torch::kLong).device(q.device()));
  auto masked = kpos.unsqueeze(0) > qpos.unsqueeze(1);  // [T, S]
  scores = scores.masked_fill(masked, -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());  // [B, H, T, S]
  return torch::matmul(probs, vh).transpose(1, 2);                                  // [B, T, H, Dh]
}

torch::Tensor masked_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& allowed) {
  const auto H = q.size(2), Dh = q.size(3);
  const int64_t n_rep = H / k.size(2);
  auto qh = q.transpose(1, 2);                    // [B, H, T, Dh]
  auto kh = repeat_kv(k, n_rep).transpose(1, 2);  // [B, H, S, Dh]
  auto vh = repeat_kv(v, n_rep).transpose(1, 2);  // [B, H, S, Dh]
  auto scores =
      torch::matmul(qh, kh.transpose(-2, -1)) / std::sqrt(static_cast<double>(Dh));  // [B, H, T, S]
  scores = scores.masked_fill(allowed.logical_not().unsqueeze(1),
                              -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());  // [B, H, T, S]
  return torch::matmul(probs, vh).transpose(1, 2);                                  // [B, T, H, Dh]
}

std::pair<torch::Tensor, torch::Tensor> segment_positions_and_mask(const torch::Tensor& segments) {
  const auto T = segments.size(1);
  auto idx = torch::arange(T, segments.options().dtype(torch::kLong));  // [T]
  auto starts = torch::ones_like(segments, torch::kBool);               // [B, T]
  if (T > 1)
    starts.narrow(1, 1, T - 1).copy_(segments.narrow(1, 1, T - 1) != segments.narrow(1, 0, T - 1));
  // Index of the segment start at or before each position.
  auto start_idx = std::get<0>(torch::cummax(
      torch::where(starts, idx.unsqueeze(0).expand_as(segments), torch::zeros_like(segments)), 1));
  auto positions = idx.unsqueeze(0) - start_idx;               // [B, T]
  auto causal = idx.unsqueeze(0) <= idx.unsqueeze(1);          // [T, S]
  auto same = segments.unsqueeze(2) == segments.unsqueeze(1);  // [B, T, S]
  return {positions, same.logical_and(causal.unsqueeze(0))};
}

}  // namespace ktl
