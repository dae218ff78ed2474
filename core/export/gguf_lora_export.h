// Converts a LoRA adapter directory in the PEFT layout (adapter_config.json +
// adapter_model.safetensors, core/adapters/lora_config.h) into a llama.cpp LoRA adapter GGUF,
// as llama.cpp's convert_lora_to_gguf.py writes one for a Llama base:
//   metadata  general.architecture = "llama", general.type = "adapter", adapter.type = "lora",
//             general.name, adapter.lora.alpha (f32), general.quantization_version = 2
//             (no llama.* hyperparameters, no vocabulary, no general.file_type)
//   tensors   blk.<i>.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_a
//             (PEFT's lora_A [r, in], ggml ne = {in, r}) and .lora_b (lora_B [out, r],
//             ne = {r, out}), f32 or f16.
// llama.cpp adds scale * alpha / r * B (A x) to the base projection, with r read from lora_b.
// The base GGUF's q/k rows are permuted from the Hugging Face rotate-half layout to the
// interleaved one (gguf_export.h); W = B A, so only lora_b's rows of q and k get that
// permutation (num_attention_heads for q, num_key_value_heads for k). That needs the base's
// config.json: the head counts are not in the adapter.
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/adapters/lora_config.h"
#include "core/export/gguf_export.h"

namespace ktl {

struct GgufLoraExportOptions {
  std::string adapter_dir;            // PEFT adapter directory
  std::string base_dir;               // base checkpoint (its config.json); "" = find it (below)
  std::string out_path;               // the .gguf file to write (atomically)
  GgufDtype dtype = GgufDtype::kF32;  // kF32 or kF16 (q8_0 is refused: lora_b rows are r wide)
  std::string name;                   // general.name; empty = the adapter directory's name
};

struct GgufLoraExportSummary {
  size_t tensors = 0;
  uint64_t bytes = 0;
  LoraConfig config;     // as read from adapter_config.json
  std::string base_dir;  // the base checkpoint whose config.json was used
  int layers = 0;
};

// The directory whose config.json describes an adapter's base: `base_dir` when given; else the
// base checkpoint that DIR/lora_base.json names (a LoRA training checkpoint,
// core/adapters/lora_checkpoint.h); else DIR itself when it holds a config.json (such a
// checkpoint keeps a copy of its base's); else adapter_config.json's base_model_name_or_path
// when it is a local checkpoint directory (as given, or relative to DIR). Throws
// std::runtime_error asking for --base when none of these has a config.json.
std::string resolve_lora_base_dir(const std::string& adapter_dir, const std::string& base_dir);

// "blk.3.attn_q.weight.lora_a" for {3, kQ, false}.
std::string gguf_lora_tensor_name(const PeftKey& key);

// Validates every tensor against the base's config.json (names, targets, layers, shapes
// [r, in] / [out, r], dtypes F32/F16/BF16, nothing missing, nothing extra) and writes the GGUF.
// Throws std::runtime_error naming the file and the problem, std::invalid_argument for a dtype
// other than f32/f16.
GgufLoraExportSummary export_gguf_lora(const GgufLoraExportOptions& opts);

}  // namespace ktl
