// Trainer: checkpoint writing, rotation, links and resume (split from trainer.cpp).
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/run_directory.h"
#include "core/train/trainer.h"

namespace ktl {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

json teacher_json(const TeacherIdentity& t) {
  return {{"teacher", t.path},
          {"teacher_config_sha256", t.config_sha256},
          {"teacher_weights_sha256", t.weights_sha256}};
}

// A distillation run resumes only with the teacher it started with (a moved copy is fine); a
// change of loss (distilling a checkpoint trained without a teacher, or the reverse) is logged.
std::string check_resumed_teacher(const json& state, const DistillTeacher* teacher,
                                  const std::string& checkpoint_dir) {
  const bool had = state.contains("distill");
  if (!had && !teacher) return "";
  if (!had)
    return "note: " + checkpoint_dir +
           " was trained without a teacher; distillation starts at this step";
  const json& d = state["distill"];
  const std::string was = d.value("teacher", std::string("?"));
  if (!teacher)
    return "note: " + checkpoint_dir + " was distilled from " + was +
           "; this run continues with the next-token loss alone";
  TeacherIdentity old;
  old.path = was;
  old.config_sha256 = d.value("teacher_config_sha256", std::string());
  old.weights_sha256 = d.value("teacher_weights_sha256", std::string());
  const std::string why = teacher->identity().mismatch(old);
  if (!why.empty())
    throw std::runtime_error(checkpoint_dir + " was distilled from the teacher " + was +
                             ", but this run's teacher " + teacher->identity().path +
                             " is another model: " + why + " (resume with --teacher " + was +
                             ", or start a new run from these weights with --init-from)");
  if (old.path != teacher->identity().path)
    return "note: the teacher moved from " + old.path + " to " + teacher->identity().path +
           " (same config and weights)";
  return "";
}

}  // namespace

void Trainer::write_state_files(const std::string& dir) const {
  const fs::path d(dir);
  write_file_atomic(d / kTrainingConfigFile, config_.to_yaml());
  // Optimizer moments + the CPU generator state, as safetensors (validated on load).
  const std::string optimizer_sha =
      write_optimizer_file((d / kOptimizerFile).string(), *optimizer_);
  json s = {
      {"step", step_},
      {"adamw_steps", optimizer_->steps_taken()},
      {"optimizer_sha256", optimizer_sha},
      {"next_learning_rate", schedule_.at(step_)},
      {"data_position", {{"seed", config_.seed}, {"next_step", step_}}},
      {"best_val_loss", best_step_ >= 0 ? json(best_val_loss_) : json(nullptr)},
      {"best_step", best_step_},
      {"best_checkpoint_step", best_ckpt_step_},
      {"best_checkpoint_val_loss",
       best_ckpt_step_ >= 0 ? json(best_ckpt_val_loss_) : json(nullptr)},
      {"evals_without_improvement", evals_without_improvement_},
      {"train_seconds", train_seconds_},
      {"loss_scale", scaler_.scale()},
      {"loss_scale_good_steps", scaler_.good_steps()},
      {"precision", precision_name(precision_)},
  };
  if (data_.teacher) s["distill"] = teacher_json(data_.teacher->identity());
  if (precision_timing_.fp32_s > 0)  // bf16: auto measured both
    s["precision_step_seconds"] = {{"fp32", precision_timing_.fp32_s},
                                   {"bf16", precision_timing_.bf16_s}};
  write_file_atomic(d / kTrainerStateFile, s.dump(2) + "\n");
}

std::string Trainer::save_checkpoint_now(bool with_eval_metrics) {
  if (!is_main()) return "";  // data parallel: rank 0 writes, the weights are the same
  // Every row reported so far is stored before the checkpoint exists: a run resumed from it
  // recomputes what came later, so a crash (or a full disk) loses no row. Throws when it can't.
  sink_.flush();
  if (with_eval_metrics && (eval_batches_ || data_.sft_val) && last_eval_step_ != step_)
    maybe_eval(true, nullptr);
  CheckpointMeta meta;
  meta.step = step_;
  const bool fresh_eval = last_eval_ && last_eval_step_ == step_;
  if (fresh_eval) {
    meta.metrics["val/loss"] = last_eval_->loss;
    meta.metrics["val/ppl"] = last_eval_->ppl;
    if (last_eval_->chars > 0) meta.metrics["val/bpc"] = last_eval_->bpc;
  }
  meta.extra["precision"] = precision_name(precision_);
  if (precision_timing_.fp32_s > 0) {
    meta.extra["precision_fp32_step_s"] = std::to_string(precision_timing_.fp32_s);
    meta.extra["precision_bf16_step_s"] = std::to_string(precision_timing_.bf16_s);
  }
  meta.extra["max_steps"] = std::to_string(config_.max_steps);
  if (data_.teacher) meta.extra["distill_teacher"] = data_.teacher->identity().path;
  const fs::path dir = fs::path(output_dir_) / ("checkpoint-" + std::to_string(step_));
  const std::string bytes = tokenizer_ ? tokenizer_->model_bytes() : std::string();
  // Decide best before writing so trainer_state.json records it.
  const bool new_best =
      fresh_eval && (best_ckpt_step_ < 0 || last_eval_->loss <= best_ckpt_val_loss_);
  const int64_t prev_best_step = best_ckpt_step_;
  const double prev_best_loss = best_ckpt_val_loss_;
  if (new_best) best_ckpt_step_ = step_, best_ckpt_val_loss_ = last_eval_->loss;
  try {
    const auto extra = [this](const std::string& tmp) { write_state_files(tmp); };
    if (has_lora(*model_)) {  // adapter-only, in the PEFT layout, naming the base
      if (!lora_base_) throw std::logic_error("LoRA training without set_lora_base()");
      LoraAdapter adapter = extract_lora(*model_);
      adapter.config = lora_config_of(config_);
      adapter.config.base_model = lora_base_->base;
      save_lora_checkpoint(dir.string(), model_->config(), adapter, bytes, *lora_base_, meta,
                           extra);
    } else {
      save_checkpoint(dir.string(), *model_, bytes, meta, extra);
    }
  } catch (...) {
    best_ckpt_step_ = prev_best_step, best_ckpt_val_loss_ = prev_best_loss;
    throw;
  }
  last_checkpoint_ = dir.string();
  last_save_step_ = step_;
  point_link("latest", last_checkpoint_);
  if (new_best) point_link("best", last_checkpoint_);
  sink_.checkpoint(step_, last_checkpoint_, meta.metrics);
  log("saved " + last_checkpoint_ + (new_best ? " (best so far)" : ""));
  rotate_checkpoints();
  return last_checkpoint_;
}

void Trainer::point_link(const std::string& name, const std::string& target_dir) {
  if (is_main()) point_run_link(output_dir_, name, target_dir);
}

void Trainer::rotate_checkpoints() {
  rotate_step_checkpoints(output_dir_, config_.keep_last_checkpoints, best_ckpt_step_, sink_);
}

void Trainer::remove_stale_temp_dirs() {
  if (is_main()) remove_stale_save_temps(output_dir_);
}

void Trainer::restore(const std::string& checkpoint_dir) {
  const json s = read_trainer_state(checkpoint_dir);
  const fs::path state_path = fs::path(checkpoint_dir) / kTrainerStateFile;
  try {
    // Before anything is restored: a run with another teacher is refused.
    if (auto note = check_resumed_teacher(s, data_.teacher.get(), checkpoint_dir); !note.empty())
      log(note);
    read_optimizer_file((fs::path(checkpoint_dir) / kOptimizerFile).string(),
                        s.at("optimizer_sha256").get<std::string>(),
                        s.at("adamw_steps").get<int64_t>(), *optimizer_);
    step_ = s.at("step").get<int64_t>();
    best_step_ = s.at("best_step").get<int64_t>();
    if (!s.at("best_val_loss").is_null()) best_val_loss_ = s["best_val_loss"].get<double>();
    best_ckpt_step_ = s.at("best_checkpoint_step").get<int64_t>();
    if (!s.at("best_checkpoint_val_loss").is_null())
      best_ckpt_val_loss_ = s["best_checkpoint_val_loss"].get<double>();
    evals_without_improvement_ = s.at("evals_without_improvement").get<int>();
    train_seconds_ = s.at("train_seconds").get<double>();
    scaler_.set_state(s.value("loss_scale", 65536.0), s.value("loss_scale_good_steps", 0));
  } catch (const json::exception& e) {
    throw std::runtime_error(state_path.string() + ": invalid trainer state: " + e.what());
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    if (what.find(checkpoint_dir) != std::string::npos) throw;
    throw std::runtime_error(checkpoint_dir + ": cannot restore training state: " + what);
  }
  const CheckpointMeta meta = read_checkpoint_meta(checkpoint_dir);
  if (meta.step != step_)
    throw std::runtime_error(checkpoint_dir + ": meta.json step " + std::to_string(meta.step) +
                             " does not match trainer_state.json step " + std::to_string(step_));
  last_checkpoint_ = checkpoint_dir;
  log("resumed from " + checkpoint_dir + " at step " + std::to_string(step_) +
      " (next learning rate " + std::to_string(schedule_.at(step_)) + ")");
}

}  // namespace ktl
