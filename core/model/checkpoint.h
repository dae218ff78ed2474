// Checkpoint directories:
//   config.json        model config with Hugging Face LlamaConfig keys
//   tokenizer.model    SentencePiece model
//   model.safetensors  weights, Hugging Face Llama names (model.layers.N.self_attn.q_proj.weight
//   ...) meta.json          step, metrics, sha256 of every other file ("files"; the weights'
//                      also as "weights_sha256" for older readers), free-form extras
// plus whatever a caller adds (the trainer: optimizer state, training_config.yaml).
// Written into "<dir>.tmp-<pid>" and renamed into place, so a crash never leaves half a checkpoint.
// Thread-safety: free functions; do not save and load the same directory concurrently.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/model/checkpoint_meta.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/safetensors/safetensors.h"
#include "core/tokenizer/chat_format.h"

namespace ktl {

class Tokenizer;

struct LoadedCheckpoint {
  ModelConfig config;
  Transformer model{nullptr};
  std::shared_ptr<Tokenizer> tokenizer;
  CheckpointMeta meta;
};

// Writes the checkpoint atomically. `write_extra(tmp_dir)` may add files before the rename.
// Weights are stored in fp32 whatever the model's dtype. Throws on I/O errors (e.g. disk full),
// leaving any previous checkpoint at `dir` intact.
void save_checkpoint(const std::string& dir, TransformerImpl& model,
                     const std::string& tokenizer_model_bytes, CheckpointMeta meta,
                     const std::function<void(const std::string& tmp_dir)>& write_extra = {});

// Loads and validates: missing files, bad JSON, a sha256 mismatch of any file (when
// `verify_sha256`; skipping it saves ~0.75 s per GB with SHA-NI, 3.4 s without), truncated
// safetensors, missing or mis-shaped tensors all throw std::runtime_error naming the path.
LoadedCheckpoint load_checkpoint(const std::string& dir, const torch::Device& device = torch::kCPU,
                                 bool verify_sha256 = true);

// True when the SentencePiece model holds the markers of a chat format
// (core/tokenizer/chat_format.h: ChatML, or the legacy ones) as user-defined pieces. Such
// checkpoints also get a tokenizer_config.json with that format's chat_template.
bool has_chat_markers(const std::string& tokenizer_model_bytes);
// generation_config.json for Hugging Face (written in every checkpoint): BOS, PAD, and as
// end-of-sequence </s> plus the format's end of turn (<|im_end|>, legacy <|end|>) when the
// tokenizer has chat markers, so generate() and pipelines stop at the end of an assistant turn.
std::string generation_config_json(const std::string& tokenizer_model_bytes);
// tokenizer_config.json for the tokenizer's pieces ("" when it has no chat markers).
std::string tokenizer_config_for(const std::string& tokenizer_model_bytes);
// Readies a checkpoint for chat training: one without a chat format (or a legacy one, when
// `want` is kChatML) gets the ChatML pieces <|im_start|> <|im_end|> appended to its tokenizer
// as user-defined pieces (ids old_vocab, old_vocab + 1) and its vocabulary grown
// (Transformer::grow_vocab; a tied head stays tied). Returns true when it grew the vocabulary,
// false when the checkpoint keeps its own format (ChatML, or legacy unless `want` is
// kChatML). Throws ChatFormatError (chat_template.h) for a template ktl cannot render.
bool add_chat_markers(LoadedCheckpoint& ck, ChatFormat want = ChatFormat::kNone);

std::string model_config_to_json(const ModelConfig& c);  // Hugging Face LlamaConfig keys

// What every loader checks before reading a tensor: verify_checkpoint_files (every file of
// meta.json's manifest present; its sha256 unchanged when `verify_sha256`), config.json and a
// tokenizer.model with config's vocab_size pieces. Throws std::runtime_error naming the path
// and the (first) problem.
struct CheckpointFiles {
  CheckpointMeta meta;
  ModelConfig config;
  std::string weights;  // path of model.safetensors
  std::shared_ptr<Tokenizer> tokenizer;
};
CheckpointFiles open_checkpoint_files(const std::string& dir, bool verify_sha256 = true);

// Writes a checkpoint directory atomically, whoever fills it (the trainer, the int8 exporter):
// `fill(tmp_dir)` writes config.json, tokenizer.model, model.safetensors and any extras; then
// meta.json (with the sha256 of every file `fill` wrote) goes last, as the mark of
// completeness, and the directory is renamed into place. A previous checkpoint at `dir` is
// moved aside only once the new one is complete. `weights_file` is the file `fill` must write
// whose sha256 is meta.json's weights_sha256 (a LoRA checkpoint: adapter_model.safetensors).
void publish_checkpoint_dir(const std::string& dir, CheckpointMeta meta,
                            const std::function<void(const std::filesystem::path& tmp)>& fill,
                            const std::string& weights_file = "model.safetensors");

// The LibTorch dtype of a stored tensor: F32, F16, BF16 or I8; anything else throws naming the
// file and the tensor.
torch::ScalarType torch_dtype_of(const StTensorInfo& t, const std::string& path);

// Copies weights from safetensors into the model's parameters (by Hugging Face name).
void load_weights_safetensors(TransformerImpl& model, const std::string& path);
void save_weights_safetensors(TransformerImpl& model, const std::string& path);

}  // namespace ktl
