// LLaMA-style decoder: token embedding, N x [RMSNorm -> GQA attention with RoPE -> residual,
// RMSNorm -> SwiGLU MLP -> residual], final RMSNorm, output head (tied to the embedding or not).
// Parameter names follow Hugging Face Llama (see hf_parameter_name), so checkpoints load there.
//
// Modules own parameters; the math lives in core/model/ops.h. The KV cache is not here: the
// inference engine owns it and composes the blocks' projections itself. Thread-safety: forward()
// may run from one thread at a time per module instance.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <utility>
#include <vector>

#include "core/model/model_config.h"
#include "core/model/projection.h"

namespace ktl {

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);  // [..., D] -> [..., D]
  torch::Tensor weight;                           // [D]
  double eps;
};
TORCH_MODULE(RMSNorm);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& c);
  // Full causal self-attention over a batch of sequences starting at position 0, or, with
  // `allowed` [B, T, T] defined, attention restricted to it (packed rows; cos/sin then [B, T, Dh]).
  torch::Tensor forward(const torch::Tensor& x,              // [B, T, D]
                        const torch::Tensor& cos,            // [T, Dh]
                        const torch::Tensor& sin,            // [T, Dh]
                        const torch::Tensor& allowed = {});  // [B, T, T] bool
  Projection q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t n_heads, n_kv_heads, head_dim;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // [..., D] -> [..., D]
  Projection gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& h,              // [B, T, D]
                        const torch::Tensor& cos,            // [T, Dh]
                        const torch::Tensor& sin,            // [T, Dh] -> [B, T, D]
                        const torch::Tensor& allowed = {});  // [B, T, T] bool (see Attention)
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const ModelConfig& c);

  // Training / full-recompute path: logits for every position.
  torch::Tensor forward(const torch::Tensor& tokens);  // [B, T] int64 -> [B, T, V]
  // Packed rows: segments [B, T] int64 marks each position's conversation; attention never
  // crosses a segment and RoPE positions restart at 0 in each, so every conversation gets the
  // logits it would get alone.
  torch::Tensor forward_packed(const torch::Tensor& tokens,     // [B, T] int64
                               const torch::Tensor& segments);  // [B, T] int64 -> [B, T, V]

  // Appends rows to the embedding (and an untied head) up to new_vocab, each set to the mean of
  // the old rows, and updates config().vocab_size. Old tokens' logits stay exactly the same.
  void grow_vocab(int64_t new_vocab);

  // The last hidden states, before the final norm (forward() is head(hidden(tokens))): for
  // losses that apply the head themselves (core/train/chunked_lm_head.h).
  torch::Tensor hidden(const torch::Tensor& tokens);  // [B, T] int64 -> [B, T, D]
  torch::Tensor hidden_packed(const torch::Tensor& tokens,     // [B, T] int64
                              const torch::Tensor& segments);  // [B, T] int64 -> [B, T, D]

  // Pieces for callers that run blocks themselves (gradient checkpointing, the engine).
  torch::Tensor embed(const torch::Tensor& tokens);  // [...] int64 -> [..., D]
  std::pair<torch::Tensor, torch::Tensor> rope(int64_t T,
                                               const torch::Device& device) const;  // [T, Dh] x2
  // Packed rows' RoPE tables and attention mask (see forward_packed).
  struct PackedRope {
    torch::Tensor cos, sin;  // [B, T, Dh] each
    torch::Tensor allowed;   // [B, T, T] bool
  };
  PackedRope packed_rope(const torch::Tensor& segments) const;  // segments [B, T] int64
  torch::Tensor head(const torch::Tensor& h);  // final norm + output: [..., D] -> [..., V]
  torch::Tensor output_weight() const;         // [V, D], the embedding when tied
  Block& block(size_t i) { return blocks_[i]; }
  size_t num_blocks() const { return blocks_.size(); }

  const ModelConfig& config() const { return config_; }
  // GPT-2 style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * layers).
  void init_weights(uint64_t seed);

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tied

 private:
  ModelConfig config_;
  std::vector<Block> blocks_;  // the same modules as `layers`, typed
};
TORCH_MODULE(Transformer);

// "layers.3.self_attn.q_proj.weight" -> "model.layers.3.self_attn.q_proj.weight";
// "lm_head.weight" stays. The inverse returns "" for names that are not ours.
std::string hf_parameter_name(const std::string& module_name);
std::string module_parameter_name(const std::string& hf_name);
// True for an attached adapter's parameters ("layers.0.self_attn.q_proj.lora_A"): they are not
// part of the base model's weights (checkpoints skip them; core/adapters saves them).
bool is_lora_parameter(const std::string& module_name);

}  // namespace ktl
