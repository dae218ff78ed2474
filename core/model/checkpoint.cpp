#include "core/model/checkpoint.h"

#include <torch/torch.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/safetensors/safetensors.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/spm_model_proto.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl {

using json = nlohmann::json;

std::string model_config_to_json(const ModelConfig& c) {
  json j = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim()},
      {"max_position_embeddings", c.max_seq_length},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"initializer_range", 0.02},
      {"bos_token_id", SpecialIds::kBos},
      {"eos_token_id", SpecialIds::kEos},
      {"pad_token_id", SpecialIds::kPad},
      {"torch_dtype", "float32"},
  };
  return j.dump(2) + "\n";
}

void save_weights_safetensors(TransformerImpl& model, const std::string& path) {
  std::vector<torch::Tensor> keep;  // contiguous fp32 CPU copies live until written
  std::vector<StTensorView> views;
  for (const auto& p : model.named_parameters()) {
    if (is_lora_parameter(p.key())) continue;  // adapters are saved on their own (PEFT files)
    auto t = p.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
    keep.push_back(t);
    views.push_back({hf_parameter_name(p.key()), StDtype::F32,
                     std::vector<int64_t>(t.sizes().begin(), t.sizes().end()), t.data_ptr(),
                     static_cast<size_t>(t.numel()) * sizeof(float)});
  }
  write_safetensors(path, views, {{"format", "pt"}});
}

void load_weights_safetensors(TransformerImpl& model, const std::string& path) {
  auto file = SafetensorsFile::open(path);
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    if (is_lora_parameter(p.key())) continue;
    const std::string name = hf_parameter_name(p.key());
    const StTensorInfo* info = file.find(name);
    if (!info) throw std::runtime_error(path + ": missing tensor '" + name + "'");
    auto& param = p.value();
    std::vector<int64_t> want(param.sizes().begin(), param.sizes().end());
    if (info->shape != want)
      throw std::runtime_error(path + ": tensor '" + name +
                               "' has the wrong shape for this config");
    if (info->dtype == StDtype::I8)
      throw std::runtime_error(path + ": tensor '" + name +
                               "' is int8 (a quantized checkpoint: the engine loads it)");
    const torch::ScalarType st = torch_dtype_of(*info, path);
    auto src = torch::from_blob(const_cast<void*>(file.data(*info)), want,
                                torch::TensorOptions().dtype(st));
    param.copy_(src.to(param.device(), param.scalar_type()));
  }
}

bool has_chat_markers(const std::string& tokenizer_model_bytes) {
  return chat_format_of_pieces(read_spm_pieces(tokenizer_model_bytes)) != ChatFormat::kNone;
}

std::string generation_config_json(const std::string& tokenizer_model_bytes) {
  // Hugging Face's generate() stops at any of these: </s>, and the end of a turn
  // (<|im_end|>, or <|end|> in the legacy format) for chat checkpoints.
  std::string eos = std::to_string(SpecialIds::kEos);
  const auto pieces = read_spm_pieces(tokenizer_model_bytes);
  const ChatFormat f = chat_format_of_pieces(pieces);
  if (f != ChatFormat::kNone) {
    for (size_t i = 0; i < pieces.size(); ++i)
      if (pieces[i].piece == ChatTemplate::end_of_turn_piece(f) && pieces[i].type == 4)
        eos = "[" + eos + ", " + std::to_string(i) + "]";
  }
  return "{\n  \"bos_token_id\": " + std::to_string(SpecialIds::kBos) +
         ",\n  \"eos_token_id\": " + eos +
         ",\n  \"pad_token_id\": " + std::to_string(SpecialIds::kPad) + "\n}\n";
}

std::string tokenizer_config_for(const std::string& tokenizer_model_bytes) {
  const auto pieces = read_spm_pieces(tokenizer_model_bytes);
  const ChatFormat f = chat_format_of_pieces(pieces);
  if (f == ChatFormat::kNone) return "";
  return ChatTemplate::tokenizer_config_json(f, pieces);
}

bool add_chat_markers(LoadedCheckpoint& ck, ChatFormat want) {
  const ChatFormatDetection d = detect_chat_format(*ck.tokenizer);
  if (d.format == ChatFormat::kUnknown) throw ChatFormatError(d.problem);
  if (d.format == ChatFormat::kChatML ||
      (d.format == ChatFormat::kLegacy && want != ChatFormat::kChatML))
    return false;
  ck.tokenizer = Tokenizer::from_bytes(append_spm_user_pieces(
      ck.tokenizer->model_bytes(), ChatTemplate::marker_pieces(ChatFormat::kChatML)));
  ck.model->grow_vocab(ck.tokenizer->vocab_size());
  ck.config.vocab_size = ck.tokenizer->vocab_size();
  return true;
}

torch::ScalarType torch_dtype_of(const StTensorInfo& t, const std::string& path) {
  switch (t.dtype) {
    case StDtype::F32:
      return torch::kFloat32;
    case StDtype::F16:
      return torch::kFloat16;
    case StDtype::BF16:
      return torch::kBFloat16;
    case StDtype::I8:
      return torch::kInt8;
    default:
      throw std::runtime_error(path + ": tensor '" + t.name + "' has unsupported dtype " +
                               st_dtype_name(t.dtype));
  }
}

void publish_checkpoint_dir(const std::string& dir, CheckpointMeta meta,
                            const std::function<void(const fs::path& tmp)>& fill,
                            const std::string& weights_file) {
  const fs::path final_dir(dir);
  if (final_dir.has_parent_path()) fs::create_directories(final_dir.parent_path());
  const fs::path tmp = final_dir.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    fill(tmp);
    // Every file the fillers wrote, so a load can tell which one the disk damaged.
    meta.file_sha256 = hash_checkpoint_files(tmp.string());
    auto weights = meta.file_sha256.find(weights_file);
    if (weights == meta.file_sha256.end())
      throw std::runtime_error(tmp.string() + ": " + weights_file + " was not written");
    meta.weights_sha256 = weights->second;
    json m = {{"step", meta.step},
              {"metrics", meta.metrics},
              {"extra", meta.extra},
              {"weights_sha256", meta.weights_sha256},
              {"files", meta.file_sha256},
              {"created_at", std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count()},
              {"format_version", 1}};
    write_file_atomic(tmp / "meta.json", m.dump(2) + "\n");  // last: marks completeness
    fsync_dir(tmp);
    const fs::path old = final_dir.string() + ".old-" + std::to_string(::getpid());
    const bool replacing = fs::exists(final_dir);
    if (replacing) fs::rename(final_dir, old);
    try {
      fs::rename(tmp, final_dir);
    } catch (...) {
      std::error_code ec;  // put the previous checkpoint back where it was
      if (replacing) fs::rename(old, final_dir, ec);
      throw;
    }
    fsync_dir(final_dir.parent_path());
    std::error_code ec;
    fs::remove_all(old, ec);  // a leftover is removed at the next start
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

void save_checkpoint(const std::string& dir, TransformerImpl& model,
                     const std::string& tokenizer_model_bytes, CheckpointMeta meta,
                     const std::function<void(const std::string&)>& write_extra) {
  publish_checkpoint_dir(dir, std::move(meta), [&](const fs::path& tmp) {
    write_file_atomic(tmp / "config.json", model_config_to_json(model.config()));
    write_file_atomic(tmp / "tokenizer.model", tokenizer_model_bytes);
    // chat_template, special tokens and their ids for Hugging Face tools
    const std::string tok_cfg = tokenizer_config_for(tokenizer_model_bytes);
    if (!tok_cfg.empty()) write_file_atomic(tmp / "tokenizer_config.json", tok_cfg);
    write_file_atomic(tmp / "generation_config.json",
                      generation_config_json(tokenizer_model_bytes));
    save_weights_safetensors(model, (tmp / "model.safetensors").string());
    if (write_extra) write_extra(tmp.string());
  });
}

CheckpointFiles open_checkpoint_files(const std::string& dir, bool verify_sha256) {
  if (!fs::is_directory(dir)) throw std::runtime_error("checkpoint directory not found: " + dir);
  // Every file of the manifest present (and, when verifying, unchanged) before any is parsed.
  const std::vector<std::string> problems = verify_checkpoint_files(dir, verify_sha256);
  if (!problems.empty()) throw std::runtime_error(problems.front());
  CheckpointFiles f;
  f.meta = read_checkpoint_meta(dir);
  f.config = read_model_config_json((fs::path(dir) / "config.json").string());
  f.weights = (fs::path(dir) / "model.safetensors").string();
  // An adapter-only (LoRA) checkpoint: say so instead of "model.safetensors: cannot open".
  if (!fs::exists(f.weights) && fs::exists(fs::path(dir) / "adapter_config.json"))
    throw std::runtime_error(dir +
                             " is a LoRA adapter checkpoint (no model.safetensors): merge it "
                             "into its base with `ktl merge-lora`, or load base + adapter");
  const std::string tok = (fs::path(dir) / "tokenizer.model").string();
  if (!fs::exists(tok)) throw std::runtime_error(dir + ": tokenizer.model missing");
  f.tokenizer = Tokenizer::load(tok);
  if (f.tokenizer->vocab_size() != f.config.vocab_size)
    throw std::runtime_error(dir + ": tokenizer has " + std::to_string(f.tokenizer->vocab_size()) +
                             " pieces but config.json says vocab_size " +
                             std::to_string(f.config.vocab_size));
  return f;
}

LoadedCheckpoint load_checkpoint(const std::string& dir, const torch::Device& device,
                                 bool verify_sha256) {
  CheckpointFiles f = open_checkpoint_files(dir, verify_sha256);
  LoadedCheckpoint ck;
  ck.meta = std::move(f.meta);
  ck.config = f.config;
  ck.tokenizer = std::move(f.tokenizer);
  ck.model = Transformer(ck.config);
  load_weights_safetensors(*ck.model, f.weights);
  ck.model->to(device);
  ck.model->eval();
  return ck;
}

}  // namespace ktl
