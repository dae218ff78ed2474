// The teacher of a distillation run (`ktl distill`): a checkpoint loaded once, frozen and in
// eval mode, run without gradients on the student's batches (under the caller's autocast, so a
// bf16 run runs the teacher in bf16 too). Its identity (path, config and weights sha256) is
// recorded in every checkpoint of the run so that a resume with another teacher is refused.
// Thread-safety: targets() from one thread at a time (the model's forward).
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

#include "core/model/model.h"
#include "core/train/distill_loss.h"

namespace ktl {

class Tokenizer;

struct TeacherIdentity {
  std::string path;            // canonical checkpoint directory (links resolved)
  std::string config_sha256;   // of its config.json
  std::string weights_sha256;  // of its model.safetensors (from meta.json)
  // "" when `other` is the same teacher (equal sha256s), else why not, in words.
  std::string mismatch(const TeacherIdentity& other) const;
};

class DistillTeacher {
 public:
  // Loads and verifies the checkpoint at `dir` on `device`. Throws std::runtime_error naming
  // `dir` when it is not a full checkpoint (a LoRA adapter alone: merge it first).
  static std::shared_ptr<DistillTeacher> load(const std::string& dir, const torch::Device& device);
  DistillTeacher(Transformer model, std::shared_ptr<Tokenizer> tokenizer, TeacherIdentity id);

  // tokens [B, T] int64 on the model's device -> the targets of its B * T rows (row-major):
  // the whole vocabulary when top_k is 0, else the top-k at `temperature`. No gradient.
  DistillTargets targets(const torch::Tensor& tokens, int64_t top_k, double temperature);

  const ModelConfig& config() const { return model_->config(); }
  const std::shared_ptr<Tokenizer>& tokenizer() const { return tokenizer_; }
  const TeacherIdentity& identity() const { return id_; }

 private:
  Transformer model_;
  std::shared_ptr<Tokenizer> tokenizer_;
  TeacherIdentity id_;
};

}  // namespace ktl
