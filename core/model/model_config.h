// Model hyper-parameters (configs/model_*.yaml, and config.json in a checkpoint).
#pragma once

#include <cstdint>
#include <string>

namespace ktl {

struct ModelConfig {
  int vocab_size = 32000;           // tokenizer pieces
  int hidden_size = 768;            // d_model
  int num_layers = 12;              // transformer blocks
  int num_heads = 12;               // query heads
  int num_kv_heads = 4;             // key/value heads (GQA); divides num_heads
  int intermediate_size = 2048;     // SwiGLU hidden width
  int max_seq_length = 1024;        // context length (RoPE positions)
  double rope_theta = 10000.0;      // RoPE base
  double rms_norm_eps = 1e-5;       // RMSNorm epsilon
  bool tie_word_embeddings = true;  // output head shares the embedding matrix

  int head_dim() const { return hidden_size / num_heads; }
  // Throws std::invalid_argument naming the bad field.
  void validate() const;
  // Closed-form parameter count (embedding counted once when tied).
  int64_t num_parameters() const;
  // Forward FLOPs per token, 2 * (non-embedding matmul params + head) + attention at context t.
  double flops_per_token(int context) const;
};

// Loads a YAML file; unknown keys and wrong types are errors naming the key.
ModelConfig load_model_config_yaml(const std::string& path);
// Loads a checkpoint's config.json (Hugging Face LlamaConfig keys); throws std::runtime_error
// naming the path and the key.
ModelConfig read_model_config_json(const std::string& path);

}  // namespace ktl
