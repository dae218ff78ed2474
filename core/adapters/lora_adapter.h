// A LoRA adapter's weights in memory, its PEFT files, and attaching it to a Transformer
// (training, merging). The serving engine takes a LoraAdapter and applies it per batch row.
//
// Thread-safety: free functions on distinct objects are safe from any thread; a LoraAdapter is
// immutable once built and may be shared read-only.
#pragma once

#include <torch/types.h>

#include <array>
#include <string>
#include <vector>

#include "core/adapters/lora_config.h"
#include "core/model/model.h"
#include "core/model/model_config.h"

namespace ktl {

struct LoraWeights {
  torch::Tensor A;  // [r, in] fp32
  torch::Tensor B;  // [out, r] fp32
  bool defined() const { return A.defined(); }
};

struct LoraAdapter {
  LoraConfig config;
  // layers[i][static_cast<int>(target)]; undefined for projections the adapter leaves alone.
  std::vector<std::array<LoraWeights, 7>> layers;

  const LoraWeights& at(int layer, LoraTarget t) const {
    return layers.at(layer)[static_cast<int>(t)];
  }
  int64_t parameter_count() const;
  int64_t bytes() const;  // fp32 bytes held
};

// Reads DIR/adapter_config.json + DIR/adapter_model.safetensors (F32, F16 or BF16 tensors,
// PEFT names). Every configured target of every layer must be present with the shape `base`
// gives it, and nothing else may be: errors name the file and the tensor.
LoraAdapter load_peft_adapter(const std::string& dir, const ModelConfig& base);
// Writes both files (atomically, F32), creating DIR.
void save_peft_adapter(const std::string& dir, const LoraAdapter& adapter);

// Adds a fresh adapter (A random from `seed`, B zero) to every targeted projection and freezes
// every other parameter (requires_grad false), so an optimizer over lora_parameters() trains the
// adapter alone. Throws if the model already carries one.
void attach_lora(TransformerImpl& model, const LoraConfig& config, uint64_t seed);
// Attaches `adapter`'s weights (copied, trainable) in the same way.
void attach_lora(TransformerImpl& model, const LoraAdapter& adapter);
// A copy of the attached adapter (fp32, CPU); throws without one.
LoraAdapter extract_lora(TransformerImpl& model);
bool has_lora(TransformerImpl& model);
// The adapter's parameters in module order ("layers.0.self_attn.q_proj.lora_A", …).
std::vector<std::pair<std::string, torch::Tensor>> lora_named_parameters(TransformerImpl& model);
// Folds every attached adapter into its weight and removes it; makes all parameters trainable
// again.
void merge_lora(TransformerImpl& model);

// Stores every frozen projection weight (a LoRA run's base) in `dtype`: bf16 for a bf16
// autocast run halves the base's memory, and autocast no longer casts (and keeps for backward)
// a bf16 copy of each weight every step. Outside autocast a projection casts such a weight to
// its input's dtype. Trainable weights are left alone. Returns the bytes freed.
int64_t store_frozen_projections(TransformerImpl& model, torch::ScalarType dtype);

// The projection of block `b` that `t` names.
Projection& lora_projection(BlockImpl& b, LoraTarget t);

// While one lives, every adapter of `model` is switched off (lora_scale 0: forward is the base
// model's, with no adapter work or dropout); the scales are restored on destruction. DPO's
// reference pass uses it, so a LoRA run needs no second copy of the model.
class LoraOffScope {
 public:
  explicit LoraOffScope(TransformerImpl& model);
  ~LoraOffScope();
  LoraOffScope(const LoraOffScope&) = delete;
  LoraOffScope& operator=(const LoraOffScope&) = delete;

 private:
  std::vector<std::pair<Projection, double>> saved_;  // projection, its scale
};

}  // namespace ktl
