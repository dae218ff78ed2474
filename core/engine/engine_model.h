// The transformer as the engine runs it: weights pulled out of the training module into fused,
// inference-only form (q/k/v in one matrix, gate/up in one), in fp32, bf16 or int8, and a forward
// pass over one flattened step of many sequences through the paged KV cache.
//
// Two ways to run a step: the CPU fast path (packed fp32/bf16/int8 kernels, in-place paged
// attention kernel), and the torch-ops path after use_torch_ops(device): weights on any LibTorch
// device (CUDA, MPS, or the CPU), linears through torch::linear, attention through the gather
// path. Off the CPU only the torch-ops path exists; on the CPU it is the fast path's twin in tests.
//
// Thread-safety: forward() writes the KV pool; one engine thread calls it. use_torch_ops() is
// called once, before any forward().
#pragma once

#include <torch/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/engine/engine_lora.h"
#include "core/engine/packed_linear.h"
#include "core/engine/paged_attention.h"
#include "core/model/model.h"
#include "core/model/model_config.h"

namespace ktl {

// A weight as stored: fp32 (any float tensor) or int8 with per-output-channel scales.
struct StoredWeight {
  torch::Tensor value;   // float tensor, or int8 [out, in]
  torch::Tensor scales;  // [out] fp32 when value is int8; undefined otherwise
};
// Looks up a weight by Hugging Face name ("model.layers.0.self_attn.q_proj.weight").
using WeightSource = std::function<StoredWeight(const std::string& hf_name)>;
// The shape a weight of that name has under `cfg` ([out, in], or [D] for norms); throws on an
// unknown name.
std::vector<int64_t> hf_weight_shape(const ModelConfig& cfg, const std::string& hf_name);

class EngineModel {
 public:
  EngineModel(const ModelConfig& cfg, const WeightSource& source, WeightDtype dtype);
  // From a loaded training module (fp32 weights).
  static EngineModel from_module(TransformerImpl& m, WeightDtype dtype);
  // Random weights drawn as Transformer::init_weights draws them (N(0, 0.02), residual
  // projections N(0, 0.02 / sqrt(2L)), norms 1), one tensor at a time: no full fp32 model is
  // ever built, so an int8 or bf16 benchmark model never holds the fp32 one.
  static EngineModel random_init(const ModelConfig& cfg, WeightDtype dtype, uint64_t seed);

  // Moves the weights to `device` and switches forward() to the torch-ops path. fp32/bf16 stay
  // as they are; int8 is dequantized to bf16 on the device (logged: the int8 kernels are CPU
  // code), so dtype() becomes kBf16. The KV pool passed to forward() must be on `device`.
  void use_torch_ops(torch::Device device);
  bool torch_ops() const { return torch_ops_; }
  torch::Device device() const { return device_; }

  // One step. `tokens` are the N flattened rows of `seqs` (AttnSeq::row indexes them).
  // Returns logits [R, V] (fp32, on the host: one copy per step off the CPU) for the rows in
  // `logit_rows` (the last row of each sampling sequence). The torch-ops path always takes the
  // gather attention path, whatever `path` says. `row_lora` (empty, or one entry per row; null
  // = the base model) names each row's LoRA adapter (engine_lora.h), built for this model's
  // config and device; rows of one adapter are best kept contiguous (no gather).
  torch::Tensor forward(const std::vector<int>& tokens, const std::vector<AttnSeq>& seqs,
                        PagedKvPool& pool, const std::vector<int>& logit_rows,
                        AttnPath path = AttnPath::kAuto,
                        const std::vector<const EngineLora*>& row_lora = {}) const;

  const ModelConfig& config() const { return cfg_; }
  WeightDtype dtype() const { return dtype_; }
  // Bytes of weights held in memory: every tensor (each storage once: a tied head and its
  // embedding count once) plus the quantized engine's packed int8 copies. By dtype: tensors only.
  int64_t weight_bytes() const;
  std::map<torch::ScalarType, int64_t> bytes_by_dtype() const;
  int64_t packed_bytes() const;
  const torch::Tensor& embedding() const { return embed_; }  // [V, D]
  const PackedLinear& head() const { return head_; }         // [V, D]
  // Every weight under its Hugging Face name, unfused; int8 ones with scales (for export).
  std::vector<std::pair<std::string, StoredWeight>> export_weights(WeightDtype as) const;

 private:
  struct Layer {
    torch::Tensor attn_norm, ffn_norm;  // [D]
    PackedLinear qkv;                   // [(H + 2 KV) * Dh, D]
    PackedLinear o;                     // [D, H * Dh]
    PackedLinear gate_up;               // [2F, D]
    PackedLinear down;                  // [D, F]
  };
  torch::Tensor embed(const torch::Tensor& ids) const;  // [N] -> [N, D]
  std::vector<torch::Tensor> tensors() const;           // every weight tensor held

  ModelConfig cfg_;
  WeightDtype dtype_;
  torch::Device device_ = torch::kCPU;  // where every weight lives
  bool torch_ops_ = false;              // set by use_torch_ops()
  std::vector<Layer> layers_;
  torch::Tensor final_norm_;  // [D]
  torch::Tensor embed_;       // [V, D] fp32/bf16, or int8 with embed_scales_ [V]
  torch::Tensor embed_scales_;
  PackedLinear head_;  // [V, D]
};

}  // namespace ktl
