#include "core/model/model.h"

#include <torch/torch.h>

#include <cmath>

#include "core/model/ops.h"

namespace ktl {

namespace {

torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  return rms_norm(x, weight, eps);
}

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : n_heads(c.num_heads), n_kv_heads(c.num_kv_heads), head_dim(c.head_dim()) {
  q_proj = register_module("q_proj", Projection(c.hidden_size, n_heads * head_dim));
  k_proj = register_module("k_proj", Projection(c.hidden_size, n_kv_heads * head_dim));
  v_proj = register_module("v_proj", Projection(c.hidden_size, n_kv_heads * head_dim));
  o_proj = register_module("o_proj", Projection(n_heads * head_dim, c.hidden_size));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, const torch::Tensor& allowed) {
  const auto B = x.size(0), T = x.size(1);
  auto q = q_proj(x).view({B, T, n_heads, head_dim});     // [B, T, H, Dh]
  auto k = k_proj(x).view({B, T, n_kv_heads, head_dim});  // [B, T, KV, Dh]
  auto v = v_proj(x).view({B, T, n_kv_heads, head_dim});  // [B, T, KV, Dh]
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  auto out = allowed.defined() ? masked_attention(q, k, v, allowed)
                               : causal_attention(q, k, v);  // [B, T, H, Dh]
  return o_proj(out.reshape({B, T, n_heads * head_dim}));    // [B, T, D]
}

MlpImpl::MlpImpl(const ModelConfig& c) {
  gate_proj = register_module("gate_proj", Projection(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", Projection(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", Projection(c.intermediate_size, c.hidden_size));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down_proj(swiglu(gate_proj(x), up_proj(x)));  // [..., F] -> [..., D]
}

BlockImpl::BlockImpl(const ModelConfig& c) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  self_attn = register_module("self_attn", Attention(c));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  mlp = register_module("mlp", Mlp(c));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& h, const torch::Tensor& cos,
                                 const torch::Tensor& sin, const torch::Tensor& allowed) {
  auto x = h + self_attn(input_layernorm(h), cos, sin, allowed);  // [B, T, D]
  return x + mlp(post_attention_layernorm(x));                    // [B, T, D]
}

TransformerImpl::TransformerImpl(const ModelConfig& c) : config_(c) {
  c.validate();
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < c.num_layers; ++i) {
    blocks_.emplace_back(c);
    layers->push_back(blocks_.back());
  }
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", linear(c.hidden_size, c.vocab_size));
  init_weights(0);
}

void TransformerImpl::init_weights(uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  const double std_ = 0.02, resid_std = 0.02 / std::sqrt(2.0 * config_.num_layers);
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    auto& t = p.value();
    if (is_lora_parameter(name)) continue;
    if (t.dim() == 1) {
      t.fill_(1.0);  // RMSNorm gains
      continue;
    }
    const bool resid =
        name.find("o_proj") != std::string::npos || name.find("down_proj") != std::string::npos;
    auto init = at::normal(0.0, resid ? resid_std : std_, t.sizes(), gen,
                           torch::TensorOptions().dtype(torch::kFloat32));
    t.copy_(init);
  }
}

torch::Tensor TransformerImpl::embed(const torch::Tensor& tokens) {
  return embed_tokens(tokens);
}

std::pair<torch::Tensor, torch::Tensor> TransformerImpl::rope(int64_t T,
                                                              const torch::Device& device) const {
  auto pos = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(device));
  return rope_cos_sin(pos, config_.head_dim(), config_.rope_theta);
}

torch::Tensor TransformerImpl::output_weight() const {
  return lm_head ? lm_head->weight : embed_tokens->weight;  // [V, D]
}

torch::Tensor TransformerImpl::head(const torch::Tensor& h) {
  return torch::nn::functional::linear(norm(h), output_weight());  // [..., V]
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& tokens) {
  return head(hidden(tokens));  // [B, T, V]
}

torch::Tensor TransformerImpl::hidden(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "tokens must be [B, T]");
  const auto T = tokens.size(1);
  TORCH_CHECK(T <= config_.max_seq_length, "sequence length ", T, " exceeds max_seq_length ",
              config_.max_seq_length);
  auto [cos, sin] = rope(T, tokens.device());  // [T, Dh] each
  auto h = embed(tokens);                      // [B, T, D]
  for (auto& b : blocks_) h = b(h, cos, sin);
  return h;  // [B, T, D]
}

TransformerImpl::PackedRope TransformerImpl::packed_rope(const torch::Tensor& segments) const {
  const auto B = segments.size(0), T = segments.size(1);
  TORCH_CHECK(T <= config_.max_seq_length, "sequence length ", T, " exceeds max_seq_length ",
              config_.max_seq_length);
  auto [positions, allowed] =
      segment_positions_and_mask(segments.to(torch::kLong));  // [B,T], [B,T,T]
  auto [cos, sin] = rope_cos_sin(positions.reshape({-1}), config_.head_dim(), config_.rope_theta);
  return {cos.view({B, T, -1}), sin.view({B, T, -1}), allowed};  // [B, T, Dh] x2, [B, T, T]
}

torch::Tensor TransformerImpl::forward_packed(const torch::Tensor& tokens,
                                              const torch::Tensor& segments) {
  return head(hidden_packed(tokens, segments));  // [B, T, V]
}

torch::Tensor TransformerImpl::hidden_packed(const torch::Tensor& tokens,
                                             const torch::Tensor& segments) {
  TORCH_CHECK(tokens.dim() == 2 && segments.sizes() == tokens.sizes(),
              "tokens and segments must both be [B, T]");
  auto r = packed_rope(segments);
  auto h = embed(tokens);  // [B, T, D]
  for (auto& b : blocks_) h = b(h, r.cos, r.sin, r.allowed);
  return h;  // [B, T, D]
}

void TransformerImpl::grow_vocab(int64_t new_vocab) {
  const int64_t old_vocab = config_.vocab_size;
  TORCH_CHECK(new_vocab >= old_vocab, "grow_vocab cannot shrink ", old_vocab, " to ", new_vocab);
  if (new_vocab == old_vocab) return;
  torch::NoGradGuard no_grad;
  auto grow = [&](torch::Tensor& w) {         // [V, D] -> [V', D]
    auto mean = w.mean(0, /*keepdim=*/true);  // [1, D]
    w.set_data(torch::cat({w.detach(), mean.expand({new_vocab - old_vocab, w.size(1)})}, 0));
  };
  grow(embed_tokens->weight);
  if (lm_head) grow(lm_head->weight);
  embed_tokens->options.num_embeddings(new_vocab);
  if (lm_head) lm_head->options.out_features(new_vocab);
  config_.vocab_size = int(new_vocab);
}

std::string hf_parameter_name(const std::string& module_name) {
  if (module_name == "lm_head.weight") return module_name;
  return "model." + module_name;
}

std::string module_parameter_name(const std::string& hf_name) {
  if (hf_name == "lm_head.weight") return hf_name;
  if (hf_name.rfind("model.", 0) == 0) return hf_name.substr(6);
  return "";
}

bool is_lora_parameter(const std::string& module_name) {
  return module_name.find(".lora_A") != std::string::npos ||
         module_name.find(".lora_B") != std::string::npos;
}

}  // namespace ktl
