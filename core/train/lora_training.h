// The model a train/sft/dpo run starts from, LoRA or not (docs/training-guide.md, "LoRA"):
//
//   resume from a LoRA checkpoint   its base (lora_base.json, sha256 checked) + its adapter
//   init from a full checkpoint     that checkpoint; with lora_rank > 0 a fresh adapter is
//                                   attached by attach_training_lora (after sft has checked the
//                                   chat markers) and the checkpoint is the run's base
//   init from a LoRA checkpoint     full training (lora_rank 0) starts from base + adapter merged;
//                                   a new LoRA run on it is refused (merge it first)
//
// Refusals are std::invalid_argument with a message naming the flag to change.
// Thread-safety: free functions.
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>

#include "core/adapters/lora_checkpoint.h"
#include "core/model/checkpoint.h"
#include "core/train/mixed_precision.h"
#include "core/train/training_config.h"

namespace ktl {

struct TrainingStart {
  LoadedCheckpoint ck;
  std::optional<LoraBaseRef> lora_base;  // set for a LoRA run: what its checkpoints name
  bool resumed_lora = false;             // the adapter came from the checkpoint resumed
};

// Loads `resume_from` (when not empty) or else `init_from`; "" both throws. See above.
TrainingStart load_training_start(const std::string& init_from, const std::string& resume_from,
                                  const TrainingConfig& c, const torch::Device& device);

// With lora_rank > 0 and no adapter yet: attaches a fresh one (seeded from c.seed), freezing the
// base. No-op otherwise. Throws when the model carries an adapter of another rank or targets.
void attach_training_lora(TransformerImpl& model, const TrainingConfig& c);

// A LoRA run in bf16 keeps its frozen base in bf16 (store_frozen_projections): half the base's
// memory and no per-step casts. Call once precision is known; no-op without an adapter or in
// another precision. Returns a line for the log ("" when nothing changed). Because bf16 storage
// removes the casts that an fp32 base costs each step, `bf16: auto` for a LoRA run is decided by
// matmul speed (choose_precision), not by timing steps on the fp32 base.
std::string store_lora_base_in_precision(TransformerImpl& model, Precision precision);

// "LoRA: r 16, alpha 32 (scale 2), dropout 0.05, targets q,k,v,o,gate,up,down: 1,234 trainable
// of 5,678 parameters (0.22%); base /abs/path" for the run's header.
std::string describe_lora(TransformerImpl& model, const TrainingConfig& c,
                          const LoraBaseRef& base);

}  // namespace ktl
