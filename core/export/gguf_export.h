// Converts a checkpoint directory (config.json with Hugging Face LlamaConfig keys,
// model.safetensors with Hugging Face Llama tensor names, tokenizer.model) into a GGUF file
// that llama.cpp loads as architecture "llama", following convert_hf_to_gguf.py: its metadata
// keys, its tensor names, reversed dims, and q_proj/k_proj rows permuted from the Hugging Face
// rotate-half RoPE layout back to the interleaved layout llama.cpp's rope expects.
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/export/gguf_format.h"
#include "core/model/model_config.h"
#include "core/safetensors/safetensors.h"

namespace ktl {

enum class GgufDtype { kF32, kF16, kQ8_0 };
GgufDtype parse_gguf_dtype(const std::string& s);  // "f32" | "f16" | "q8_0"; throws otherwise
const char* gguf_dtype_name(GgufDtype d);
uint32_t gguf_file_type(GgufDtype d);  // general.file_type (llama_ftype): 0, 1, 7

struct GgufExportOptions {
  std::string model_dir;              // checkpoint directory
  std::string out_path;               // the .gguf file to write (atomically)
  GgufDtype dtype = GgufDtype::kF32;  // 2-D weights; norms always stay f32
  std::string name;                   // general.name; empty = the directory's name
};

struct GgufExportSummary {
  size_t tensors = 0;
  uint64_t bytes = 0;
  int vocab_size = 0;
  int f16_fallbacks = 0;  // q8_0 tensors whose rows are not a multiple of 32 (written as f16)
};

// Throws std::runtime_error naming the file and the problem (missing tensor, bad shape, ...).
GgufExportSummary export_gguf(const GgufExportOptions& opts);

// Reads config.json (Hugging Face LlamaConfig keys) and validates it.
ModelConfig read_hf_llama_config(const std::string& path);

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight"; "" for unknown names.
std::string gguf_tensor_name(const std::string& hf_name);

// Rows of a q/k projection [n_heads * head_dim, cols]: Hugging Face (rotate-half) order to the
// interleaved order, i.e. w.reshape(n_heads, 2, head_dim/2, cols).swapaxes(1, 2); and back.
void permute_rope_rows(const float* src, float* dst, int64_t rows, int64_t cols, int n_heads);
void unpermute_rope_rows(const float* src, float* dst, int64_t rows, int64_t cols, int n_heads);

// A safetensors tensor of dtype F32, F16 or BF16 (the caller checks) as floats.
std::vector<float> safetensors_to_f32(const SafetensorsFile& st, const StTensorInfo& t);
// Floats as GGUF tensor bytes of `type` (f32, f16, or q8_0 with a size that is a multiple of 32).
std::string encode_gguf_tensor(const std::vector<float>& x, GgmlType type);

}  // namespace ktl
