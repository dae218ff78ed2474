#include "core/adapters/lora_checkpoint.h"

#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/base/file_util.h"

namespace ktl {

namespace fs = std::filesystem;
using json = nlohmann::json;

LoraBaseRef lora_base_of(const std::string& base_dir) {
  const CheckpointMeta meta = read_checkpoint_meta(base_dir);
  if (meta.weights_sha256.empty())
    throw std::runtime_error(base_dir + "/meta.json: no weights_sha256 (a LoRA base needs one)");
  return {fs::absolute(base_dir).lexically_normal().string(), meta.weights_sha256};
}

std::string checked_lora_base(const std::string& dir, const std::string& base_dir) {
  if (!fs::exists(fs::path(dir) / kLoraBaseFile)) {
    if (base_dir.empty())
      throw std::runtime_error(dir + ": no " + kLoraBaseFile +
                               " names the base model: give it (--base)");
    return base_dir;
  }
  const LoraBaseRef ref = read_lora_base(dir);
  const std::string base = base_dir.empty() ? ref.base : base_dir;
  const std::string sha = read_checkpoint_meta(base).weights_sha256;
  if (ref.weights_sha256 != sha)
    throw std::runtime_error(dir + ": the adapter was trained on a base with weights sha256 " +
                             ref.weights_sha256 + " (" + ref.base + "), but " + base + " has " +
                             sha + ": not the same base model");
  return base;
}

bool is_lora_checkpoint(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / kAdapterConfigFile, ec) &&
         !fs::exists(fs::path(dir) / "model.safetensors", ec);
}

void save_lora_checkpoint(const std::string& dir, const ModelConfig& base_config,
                          const LoraAdapter& adapter, const std::string& tokenizer_model_bytes,
                          const LoraBaseRef& base, CheckpointMeta meta,
                          const std::function<void(const std::string&)>& write_extra) {
  meta.extra["lora_base"] = base.base;
  meta.extra["lora_rank"] = std::to_string(adapter.config.rank);
  publish_checkpoint_dir(
      dir, std::move(meta),
      [&](const fs::path& tmp) {
        write_file_atomic(tmp / "config.json", model_config_to_json(base_config));
        write_file_atomic(tmp / "tokenizer.model", tokenizer_model_bytes);
        const std::string tok_cfg = tokenizer_config_for(tokenizer_model_bytes);
        if (!tok_cfg.empty()) write_file_atomic(tmp / "tokenizer_config.json", tok_cfg);
        write_file_atomic(tmp / "generation_config.json",
                          generation_config_json(tokenizer_model_bytes));
        save_peft_adapter(tmp.string(), adapter);
        write_file_atomic(tmp / kLoraBaseFile, lora_base_json(base));
        if (write_extra) write_extra(tmp.string());
      },
      kAdapterWeightsFile);
}

LoadedCheckpoint load_lora_checkpoint(const std::string& dir, const torch::Device& device,
                                      bool verify_sha256, const std::string& base_dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error("adapter directory not found: " + dir);
  CheckpointMeta meta;
  if (fs::exists(fs::path(dir) / "meta.json")) {  // ours; a PEFT directory has none
    const auto problems = verify_checkpoint_files(dir, verify_sha256);
    if (!problems.empty()) throw std::runtime_error(problems.front());
    meta = read_checkpoint_meta(dir);
  }
  const std::string base = checked_lora_base(dir, base_dir);
  LoadedCheckpoint ck = load_checkpoint(base, device, verify_sha256);
  const LoraAdapter adapter = load_peft_adapter(dir, ck.config);
  attach_lora(*ck.model, adapter);
  ck.meta = std::move(meta);
  return ck;
}

LoadedCheckpoint load_checkpoint_merging_lora(const std::string& dir, const torch::Device& device,
                                              bool verify_sha256, bool* was_lora) {
  const bool lora = is_lora_checkpoint(dir);
  if (was_lora) *was_lora = lora;
  if (!lora) return load_checkpoint(dir, device, verify_sha256);
  LoadedCheckpoint ck = load_lora_checkpoint(dir, device, verify_sha256);
  merge_lora(*ck.model);
  ck.model->eval();
  return ck;
}

}  // namespace ktl
