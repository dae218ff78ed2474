// DpoTrainer: checkpoint writing and resume (split from dpo.cpp), in the trainer's layout
// (core/train/run_directory.h) with a "dpo" section in trainer_state.json and the reference
// log-probabilities in optimizer.safetensors.
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/dpo.h"
#include "core/train/run_directory.h"

namespace ktl {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Reference log-probabilities in optimizer.safetensors: "dpo/<split>_ref_<side>".
std::string ref_key(const char* split, const char* side) {
  return std::string("dpo/") + split + "_ref_" + side;
}

Precision precision_from_name(const std::string& name) {
  if (name == "bf16") return Precision::kBf16;
  if (name == "fp16") return Precision::kFp16;
  if (name == "fp32") return Precision::kFp32;
  throw std::runtime_error("unknown precision '" + name + "'");
}

}  // namespace

void DpoTrainer::set_checkpoint_note(const std::string& key, const std::string& value) {
  notes_[key] = value;
}

void DpoTrainer::write_state_files(const std::string& dir) const {
  const fs::path d(dir);
  write_file_atomic(d / kTrainingConfigFile, cfg_.train.to_yaml());
  std::map<std::string, torch::Tensor> extra;
  const bool with_ref = cfg_.loss == PreferenceLoss::kDpo;
  if (with_ref) {  // NaN where not computed yet
    extra[ref_key("train", "chosen")] = train_.ref_chosen;
    extra[ref_key("train", "rejected")] = train_.ref_rejected;
    if (val_.n) {
      extra[ref_key("val", "chosen")] = val_.ref_chosen;
      extra[ref_key("val", "rejected")] = val_.ref_rejected;
    }
  }
  const std::string sha = write_optimizer_file((d / kOptimizerFile).string(), *optimizer_, extra);
  const json s = {
      {"step", step_},
      {"adamw_steps", optimizer_->steps_taken()},
      {"optimizer_sha256", sha},
      {"next_learning_rate", current_lr()},
      {"data_position", {{"seed", cfg_.train.seed}, {"next_step", step_}}},
      {"train_seconds", train_seconds_},
      {"loss_scale", scaler_.scale()},
      {"loss_scale_good_steps", scaler_.good_steps()},
      {"precision", precision_name(precision_)},
      {"dpo",
       {{"loss", preference_loss_name(cfg_.loss)},
        {"beta", cfg_.beta},
        {"orpo_lambda", cfg_.orpo_lambda},
        {"train_pairs", train_.n},
        {"val_pairs", val_.n},
        {"pairs_fingerprint", fingerprint_},
        {"reference_logprobs", count_reference()},
        {"reference_complete", reference_complete()}}},
  };
  write_file_atomic(d / kTrainerStateFile, s.dump(2) + "\n");
}

std::string DpoTrainer::save_checkpoint_now() {
  // Every row reported so far is stored before the checkpoint exists (see MetricsSink::flush).
  sink_.flush();
  CheckpointMeta meta;
  meta.step = step_;
  if (last_eval_step_ == step_) {
    const std::string split = val_.n ? "val/" : "train/";
    meta.metrics[split + "loss"] = last_eval_.loss;
    meta.metrics[split + "reward_accuracy"] = last_eval_.reward_accuracy;
    meta.metrics[split + "reward_margin"] = last_eval_.reward_margin;
  }
  meta.extra = notes_;
  meta.extra["dpo_loss"] = preference_loss_name(cfg_.loss);
  meta.extra["dpo_beta"] = std::to_string(cfg_.beta);
  meta.extra["dpo_orpo_lambda"] = std::to_string(cfg_.orpo_lambda);
  meta.extra["precision"] = precision_name(precision_);
  meta.extra["max_steps"] = std::to_string(cfg_.train.max_steps);
  const fs::path dir = fs::path(output_dir_) / ("checkpoint-" + std::to_string(step_));
  const std::string bytes = tokenizer_ ? tokenizer_->model_bytes() : std::string();
  const auto extra = [this](const std::string& tmp) { write_state_files(tmp); };
  if (lora_) {  // adapter-only, in the PEFT layout, naming the base
    if (!lora_base_) throw std::logic_error("LoRA dpo without set_lora_base()");
    LoraAdapter adapter = extract_lora(*policy_);
    adapter.config = lora_config_of(cfg_.train);
    adapter.config.base_model = lora_base_->base;
    save_lora_checkpoint(dir.string(), policy_->config(), adapter, bytes, *lora_base_, meta, extra);
  } else {
    save_checkpoint(dir.string(), *policy_, bytes, meta, extra);
  }
  last_checkpoint_ = dir.string();
  last_save_step_ = step_;
  point_run_link(output_dir_, "latest", last_checkpoint_);
  sink_.checkpoint(step_, last_checkpoint_, meta.metrics);
  sink_.log("saved " + last_checkpoint_);
  rotate_step_checkpoints(output_dir_, cfg_.train.keep_last_checkpoints, -1, sink_);
  return last_checkpoint_;
}

void DpoTrainer::restore(const std::string& checkpoint_dir) {
  const json s = read_trainer_state(checkpoint_dir);
  const fs::path state_path = fs::path(checkpoint_dir) / kTrainerStateFile;
  try {
    const DpoCheckpointInfo info = read_dpo_checkpoint_info(checkpoint_dir);
    if (info.loss != cfg_.loss)
      throw std::runtime_error(checkpoint_dir + ": trained with --loss " +
                               preference_loss_name(info.loss) + ", not " +
                               preference_loss_name(cfg_.loss));
    const json& d = s.at("dpo");
    if (d.at("pairs_fingerprint").get<std::string>() != fingerprint_ ||
        d.at("train_pairs").get<int64_t>() != train_.n ||
        d.at("val_pairs").get<int64_t>() != val_.n)
      throw std::runtime_error(
          checkpoint_dir + ": its preference pairs (" + d.at("train_pairs").dump() + " train, " +
          d.at("val_pairs").dump() + " held-out) are not these (" + std::to_string(train_.n) +
          " train, " + std::to_string(val_.n) +
          " held-out, or other text): resume with the run's --data, --val-fraction, --seed and "
          "--max-seq-length");
    auto extra = read_optimizer_file((fs::path(checkpoint_dir) / kOptimizerFile).string(),
                                     s.at("optimizer_sha256").get<std::string>(),
                                     s.at("adamw_steps").get<int64_t>(), *optimizer_);
    auto take = [&](Split& sp, const char* split) {
      auto c = extra.find(ref_key(split, "chosen")), r = extra.find(ref_key(split, "rejected"));
      if (sp.n == 0) return;
      if (c == extra.end() || r == extra.end())
        throw std::runtime_error(checkpoint_dir + ": no reference log-probabilities");
      if (c->second.numel() != sp.n || r->second.numel() != sp.n)
        throw std::runtime_error(checkpoint_dir +
                                 ": reference log-probabilities of the wrong size");
      sp.ref_chosen = c->second.reshape({sp.n}), sp.ref_rejected = r->second.reshape({sp.n});
    };
    if (cfg_.loss == PreferenceLoss::kDpo) take(train_, "train"), take(val_, "val");
    step_ = s.at("step").get<int64_t>();
    train_seconds_ = s.at("train_seconds").get<double>();
    if (cfg_.train.bf16 == "auto" && !cfg_.train.fp16) {  // what auto chose stays chosen
      precision_ = precision_from_name(s.at("precision").get<std::string>());
      precision_resolved_ = true;
      scaler_ = GradScaler(precision_ == Precision::kFp16);
      sink_.log(std::string("precision: ") + precision_name(precision_) + " (bf16: auto, as " +
                "measured by the run that wrote " + checkpoint_dir + ")");
    }
    scaler_.set_state(s.value("loss_scale", 65536.0), s.value("loss_scale_good_steps", 0));
  } catch (const json::exception& e) {
    throw std::runtime_error(state_path.string() + ": invalid trainer state: " + e.what());
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    if (what.find(checkpoint_dir) != std::string::npos) throw;
    throw std::runtime_error(checkpoint_dir + ": cannot restore dpo state: " + what);
  }
  if (read_checkpoint_meta(checkpoint_dir).step != step_)
    throw std::runtime_error(checkpoint_dir + ": meta.json step does not match trainer_state.json");
  last_checkpoint_ = checkpoint_dir;
  last_save_step_ = step_;
  sink_.log("resumed from " + checkpoint_dir + " at step " + std::to_string(step_) +
            " (next learning rate " + std::to_string(current_lr()) + ")");
}

DpoCheckpointInfo read_dpo_checkpoint_info(const std::string& checkpoint_dir) {
  const json s = read_trainer_state(checkpoint_dir);
  if (!s.contains("dpo") || !s["dpo"].is_object())
    throw std::runtime_error(checkpoint_dir +
                             ": not a dpo checkpoint (trainer_state.json has no \"dpo\" section)");
  const json& d = s["dpo"];
  DpoCheckpointInfo info;
  try {
    info.loss = parse_preference_loss(d.at("loss").get<std::string>());
    info.beta = d.at("beta").get<double>();
    info.orpo_lambda = d.at("orpo_lambda").get<double>();
    info.reference_complete = d.value("reference_complete", false);
  } catch (const std::exception& e) {
    throw std::runtime_error(checkpoint_dir + "/" + kTrainerStateFile +
                             ": invalid \"dpo\" section: " + e.what());
  }
  return info;
}

}  // namespace ktl
