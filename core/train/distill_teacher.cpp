#include "core/train/distill_teacher.h"

#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>

#include "core/adapters/lora_checkpoint.h"
#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl {

namespace fs = std::filesystem;

std::string TeacherIdentity::mismatch(const TeacherIdentity& o) const {
  if (weights_sha256 != o.weights_sha256)
    return "its weights differ (model.safetensors sha256 " + weights_sha256.substr(0, 12) + " vs " +
           o.weights_sha256.substr(0, 12) + ")";
  if (config_sha256 != o.config_sha256)
    return "its config.json differs (sha256 " + config_sha256.substr(0, 12) + " vs " +
           o.config_sha256.substr(0, 12) + ")";
  return "";
}

std::shared_ptr<DistillTeacher> DistillTeacher::load(const std::string& dir,
                                                     const torch::Device& device) {
  if (!fs::is_directory(dir))
    throw std::runtime_error("teacher " + dir + ": not a checkpoint directory");
  if (is_lora_checkpoint(dir))
    throw std::runtime_error("teacher " + dir +
                             " is a LoRA adapter: merge it into its base first (ktl merge-lora)");
  LoadedCheckpoint ck = load_checkpoint(dir, device);  // verifies every file's sha256
  TeacherIdentity id;
  id.path = fs::canonical(dir).string();
  const fs::path config = fs::path(dir) / "config.json";
  auto it = ck.meta.file_sha256.find("config.json");
  id.config_sha256 = it != ck.meta.file_sha256.end() ? it->second : sha256_file_hex(config);
  id.weights_sha256 = ck.meta.weights_sha256.empty()
                          ? sha256_file_hex(fs::path(dir) / "model.safetensors")
                          : ck.meta.weights_sha256;
  return std::make_shared<DistillTeacher>(ck.model, ck.tokenizer, std::move(id));
}

DistillTeacher::DistillTeacher(Transformer model, std::shared_ptr<Tokenizer> tokenizer,
                               TeacherIdentity id)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), id_(std::move(id)) {
  model_->eval();
  for (auto& p : model_->parameters()) p.set_requires_grad(false);
}

DistillTargets DistillTeacher::targets(const torch::Tensor& tokens, int64_t top_k,
                                       double temperature) {
  torch::NoGradGuard no_grad;
  auto h = model_->hidden(tokens);                     // [B, T, Dt]
  auto hn = model_->norm(h).reshape({-1, h.size(2)});  // [B*T, Dt]
  if (top_k > 0) return teacher_top_k(hn, model_->output_weight(), top_k, temperature);
  DistillTargets t;
  t.teacher_h = hn;
  t.teacher_weight = model_->output_weight();
  return t;
}

}  // namespace ktl
