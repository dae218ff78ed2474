// LoRA adapter settings and PEFT's names for them, without LibTorch (the exporter, the jobs
// daemon and the server use it). An adapter directory in the PEFT layout holds
// adapter_config.json (this config) and adapter_model.safetensors, whose tensors are named
//   base_model.model.model.layers.<i>.self_attn.q_proj.lora_A.weight   [r, in]
//   base_model.model.model.layers.<i>.self_attn.q_proj.lora_B.weight   [out, r]
// as Hugging Face PEFT writes them for a LlamaForCausalLM (the names our Hugging Face export
// uses). The adapter's output is scale * B A x, scale = lora_alpha / r.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/model/model_config.h"

namespace ktl {

// The seven projections of a block that can carry an adapter, in block order.
enum class LoraTarget { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr std::array<LoraTarget, 7> kAllLoraTargets = {
    LoraTarget::kQ,    LoraTarget::kK,  LoraTarget::kV,   LoraTarget::kO,
    LoraTarget::kGate, LoraTarget::kUp, LoraTarget::kDown};

// "q", "gate", …: the short names of --lora-targets.
std::string_view lora_target_short_name(LoraTarget t);
// "self_attn.q_proj", "mlp.gate_proj", …: the module path inside a block.
std::string_view lora_target_module(LoraTarget t);
// "q_proj", "gate_proj", …: PEFT's target_modules entries.
std::string_view lora_target_peft_name(LoraTarget t);
// Accepts a short name ("q"), a PEFT name ("q_proj") or "all"; throws std::invalid_argument
// naming the valid choices otherwise.
std::vector<LoraTarget> parse_lora_targets(const std::string& comma_separated);

struct LoraConfig {
  int rank = 16;          // r; 0 = no adapter
  double alpha = 32;      // lora_alpha; scale = alpha / rank
  double dropout = 0.05;  // on the adapter's input while training
  std::vector<LoraTarget> targets{kAllLoraTargets.begin(), kAllLoraTargets.end()};
  std::string base_model;  // base_model_name_or_path (informational)

  bool enabled() const { return rank > 0; }
  double scale() const { return rank > 0 ? alpha / rank : 0.0; }
  bool targets_has(LoraTarget t) const;
  // Throws std::invalid_argument on a negative rank, alpha <= 0, dropout outside [0, 1),
  // or no targets.
  void validate() const;
};

// PEFT's adapter_config.json (LORA, CAUSAL_LM) for `c`, and back. Parsing refuses what the
// engine cannot apply (another peft_type, DoRA, rsLoRA, rank/alpha patterns, modules_to_save,
// fan_in_fan_out, biases) with an error naming the field.
std::string lora_config_to_peft_json(const LoraConfig& c);
LoraConfig lora_config_from_peft_json(const std::string& json_text);

struct PeftKey {
  int layer = 0;
  LoraTarget target = LoraTarget::kQ;
  bool is_b = false;  // lora_B (else lora_A)
};
// "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight" for {3, kQ, false}.
std::string peft_tensor_name(const PeftKey& k);
// The inverse; nullopt for any other name (also for PEFT's older ".lora_A.default.weight").
std::optional<PeftKey> parse_peft_tensor_name(const std::string& name);

// [out, in] of a block projection under `c`.
std::pair<int64_t, int64_t> lora_target_shape(const ModelConfig& c, LoraTarget t);

// lora_base.json of a LoRA training checkpoint: the base it trained on.
inline constexpr const char* kLoraBaseFile = "lora_base.json";
struct LoraBaseRef {
  std::string base;            // absolute path of the base checkpoint directory
  std::string weights_sha256;  // the base's meta.json weights_sha256
};
std::string lora_base_json(const LoraBaseRef& ref);
// DIR/lora_base.json; throws std::runtime_error naming the file when missing or invalid.
LoraBaseRef read_lora_base(const std::string& dir);

inline constexpr const char* kAdapterConfigFile = "adapter_config.json";
inline constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";

}  // namespace ktl
