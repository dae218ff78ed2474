// Tensor ops of the LLaMA-style decoder as free functions (modules only own parameters).
// Shapes: B batch, T query length, S key length, H query heads, KV key/value heads, Dh head dim.
// Thread-safety: pure functions.
#pragma once

#include <torch/types.h>

#include <utility>

namespace ktl {

// x / sqrt(mean(x^2) + eps) * weight, computed in fp32 for low-precision inputs.
torch::Tensor rms_norm(const torch::Tensor& x,       // [..., D]
                       const torch::Tensor& weight,  // [D]
                       double eps);

// cos/sin tables for explicit positions, Hugging Face layout (frequencies repeated twice).
std::pair<torch::Tensor, torch::Tensor> rope_cos_sin(const torch::Tensor& positions,  // [N] int64
                                                     int64_t head_dim, double theta,
                                                     torch::ScalarType dtype = torch::kFloat32);
// Rotates pairs (i, i + Dh/2) ("rotate_half"); cos/sin [N, Dh] broadcast over heads.
torch::Tensor apply_rope(const torch::Tensor& x,     // [..., N, heads, Dh]
                         const torch::Tensor& cos,   // [N, Dh]
                         const torch::Tensor& sin);  // [N, Dh]

torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up);  // silu(gate) * up

// Dense causal attention with grouped-query heads. Query i (0-based within T) sits at absolute
// position q_offset + i and sees keys 0 .. q_offset + i. Returns [B, T, H, Dh].
torch::Tensor causal_attention(const torch::Tensor& q,  // [B, T, H, Dh]
                               const torch::Tensor& k,  // [B, S, KV, Dh]
                               const torch::Tensor& v,  // [B, S, KV, Dh]
                               int64_t q_offset = 0);

// Attention where `allowed` [B, T, S] (bool) says which keys each query sees: packed SFT rows
// use causal AND same-conversation (block-diagonal causal), so no conversation sees another.
torch::Tensor masked_attention(const torch::Tensor& q,         // [B, T, H, Dh]
                               const torch::Tensor& k,         // [B, S, KV, Dh]
                               const torch::Tensor& v,         // [B, S, KV, Dh]
                               const torch::Tensor& allowed);  // [B, T, S] bool

// Packed rows: segments [B, T] int64 (one id per conversation, equal ids contiguous).
// Returns the within-segment positions [B, T] and the block-diagonal causal mask [B, T, T].
std::pair<torch::Tensor, torch::Tensor> segment_positions_and_mask(const torch::Tensor& segments);

// Repeats each kv head H/KV times so GQA becomes plain multi-head attention.
torch::Tensor repeat_kv(const torch::Tensor& x,
                        int64_t n_rep);  // [B, S, KV, Dh] -> [B, S, KV*n_rep, Dh]

}  // namespace ktl
