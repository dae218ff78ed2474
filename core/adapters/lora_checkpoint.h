// A LoRA training checkpoint: an adapter-only directory that is also a PEFT adapter.
//
//   adapter_config.json, adapter_model.safetensors   the PEFT files (core/adapters/lora_config.h)
//   lora_base.json      {"base": absolute path of the base checkpoint, "weights_sha256": the
//                       base's meta.json weights_sha256}: what resume, merge and eval load
//   config.json, tokenizer.model, tokenizer_config.json, generation_config.json   the base's
//   meta.json           as every checkpoint (core/model/checkpoint.h): step, metrics, the sha256
//                       of every file; weights_sha256 is adapter_model.safetensors'
// plus whatever the trainer adds (optimizer.safetensors, trainer_state.json,
// training_config.yaml). No copy of the base weights: a few MB instead of hundreds.
//
// Thread-safety: free functions; do not save and load the same directory concurrently.
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>

#include "core/adapters/lora_adapter.h"
#include "core/model/checkpoint.h"

namespace ktl {

// The reference to the checkpoint at `base_dir` (absolute path, its meta's weights_sha256).
// Throws std::runtime_error when it has no meta.json or no weights checksum.
LoraBaseRef lora_base_of(const std::string& base_dir);

// The base of LoRA checkpoint DIR: `base_dir` when given, else the one DIR/lora_base.json names;
// when DIR has a lora_base.json, that base's weights_sha256 must still be the one recorded
// there, else std::runtime_error naming both checksums (the base changed since training).
std::string checked_lora_base(const std::string& dir, const std::string& base_dir = "");

// An adapter directory: adapter_config.json without model.safetensors (ours or PEFT's).
bool is_lora_checkpoint(const std::string& dir);

// Publishes `dir` atomically (publish_checkpoint_dir) with the files above. `adapter` is written
// as given (its config names the base in base_model); `write_extra(tmp_dir)` adds the trainer's
// files. Throws on I/O errors, leaving a previous checkpoint at `dir` intact.
void save_lora_checkpoint(const std::string& dir, const ModelConfig& base_config,
                          const LoraAdapter& adapter, const std::string& tokenizer_model_bytes,
                          const LoraBaseRef& base, CheckpointMeta meta,
                          const std::function<void(const std::string& tmp_dir)>& write_extra = {});

// Loads the base named by DIR/lora_base.json (or `base_dir` when not empty) and attaches DIR's
// adapter (trainable, the rest frozen). The files are verified as load_checkpoint does (when
// `verify_sha256`), and the base's weights_sha256 must equal the one lora_base.json recorded:
// otherwise std::runtime_error naming both checksums (the base changed since the adapter was
// trained). `meta` of the result is the adapter checkpoint's.
LoadedCheckpoint load_lora_checkpoint(const std::string& dir,
                                      const torch::Device& device = torch::kCPU,
                                      bool verify_sha256 = true, const std::string& base_dir = "");

// A full checkpoint as load_checkpoint does, or a LoRA checkpoint with its adapter merged into
// the base weights (an ordinary model: eval, generate). Sets *was_lora when given.
LoadedCheckpoint load_checkpoint_merging_lora(const std::string& dir,
                                              const torch::Device& device = torch::kCPU,
                                              bool verify_sha256 = true,
                                              bool* was_lora = nullptr);

}  // namespace ktl
