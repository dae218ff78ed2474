// Loading a checkpoint straight into the engine's form, and writing int8 checkpoints.
//
// An int8 checkpoint is an ordinary checkpoint directory (config.json, tokenizer.model,
// meta.json) whose model.safetensors stores each linear weight as I8 [out, in] plus
// "<name>_scale" F32 [out] (per-output-channel), norms in F32; meta.json's extra has
// "quantization": "int8". The training loader does not read it; the engine does.
//
// Thread-safety: free functions.
#pragma once

#include <memory>
#include <string>

#include "core/engine/engine_model.h"
#include "core/model/model_config.h"

namespace ktl {

class Tokenizer;

struct LoadedEngineModel {
  ModelConfig config;
  std::shared_ptr<EngineModel> model;
  std::shared_ptr<Tokenizer> tokenizer;
  std::string quantization;   // "" or "int8": how the weights are stored on disk
  int64_t bytes_on_disk = 0;  // model.safetensors
};

bool is_int8_checkpoint(const std::string& dir);
// What serving runs when no format is asked: int8 for every checkpoint (an int8 one as stored,
// any other quantized at load). Chosen by measurement (issue #24): int8 cost at most +0.01%
// held-out bits per character on model_tiny and model_small checkpoints (the rule: under 1%), and
// decodes faster than fp32 on one thread; the table is in docs/inference-guide.md, "The default
// dtype".
constexpr WeightDtype kDefaultServingDtype = WeightDtype::kInt8;
// The compute format from a --dtype value: "auto" (or "") is kDefaultServingDtype; fp32 | bf16 |
// int8 as asked (an int8 checkpoint asked for fp32/bf16 is dequantized). Throws
// std::invalid_argument on another value.
WeightDtype engine_dtype_for(const std::string& dtype);
// Loads any checkpoint straight into the engine's form (no training module; fp32 weights the
// engine does not fuse stay in the file's read-only mapping); `dtype` is the compute format (an
// int8 checkpoint loads as int8 unless fp32/bf16 is asked, then it is dequantized). Throws with
// the path on missing/corrupt files, a tokenizer/config mismatch or a tensor of the wrong shape.
// `verify_sha256` false skips hashing the files (open_checkpoint_files).
LoadedEngineModel load_engine_model(const std::string& dir, WeightDtype dtype,
                                    bool verify_sha256 = true);
// Writes `model`'s weights as an int8 checkpoint in `out_dir`, copying config.json and
// tokenizer.model from `src_dir`. Atomic (temp dir + rename).
void save_int8_checkpoint(const EngineModel& model, const std::string& src_dir,
                          const std::string& out_dir);

}  // namespace ktl
