// Trainer: checkpoint writing, rotation, links and resume (split from trainer.cpp).
#include <torch/torch.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <regex>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
#include "core/safetensors/safetensors.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/trainer.h"

namespace ktl {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kConfigFile = "training_config.yaml";

// checkpoint-<step> directories in `dir`, sorted by step.
std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& dir) {
  static const std::regex re("checkpoint-([0-9]+)");
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (!e.is_symlink() && e.is_directory() && std::regex_match(name, m, re))
      out.emplace_back(std::stoll(m[1].str()), e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

void Trainer::write_state_files(const std::string& dir) const {
  const fs::path d(dir);
  write_file_atomic(d / kConfigFile, config_.to_yaml());
  // Optimizer moments + the CPU generator state, as safetensors (validated on load).
  std::map<std::string, torch::Tensor> keep;
  std::vector<StTensorView> views;
  for (auto& [name, t] : optimizer_->state_tensors())
    keep[name] = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  auto rng = at::detail::getDefaultCPUGenerator().get_state().contiguous();  // uint8
  keep["rng/cpu"] = rng;
  for (auto& [name, t] : keep)
    views.push_back({name, t.scalar_type() == torch::kUInt8 ? StDtype::U8 : StDtype::F32,
                     t.sizes().vec(), t.data_ptr(), size_t(t.nbytes())});
  const fs::path opt = d / kOptimizerFile;
  write_safetensors(opt.string(), views, {{"format", "ktl-adamw-1"}});
  json s = {
      {"step", step_},
      {"adamw_steps", optimizer_->steps_taken()},
      {"optimizer_sha256", sha256_file_hex(opt)},
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
  if (precision_timing_.fp32_s > 0)  // bf16: auto measured both
    s["precision_step_seconds"] = {{"fp32", precision_timing_.fp32_s},
                                   {"bf16", precision_timing_.bf16_s}};
  write_file_atomic(d / kStateFile, s.dump(2) + "\n");
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
  const fs::path dir = fs::path(output_dir_) / ("checkpoint-" + std::to_string(step_));
  const std::string bytes = tokenizer_ ? tokenizer_->model_bytes() : std::string();
  // Decide best before writing so trainer_state.json records it.
  const bool new_best =
      fresh_eval && (best_ckpt_step_ < 0 || last_eval_->loss <= best_ckpt_val_loss_);
  const int64_t prev_best_step = best_ckpt_step_;
  const double prev_best_loss = best_ckpt_val_loss_;
  if (new_best) best_ckpt_step_ = step_, best_ckpt_val_loss_ = last_eval_->loss;
  try {
    save_checkpoint(dir.string(), *model_, bytes, meta,
                    [this](const std::string& tmp) { write_state_files(tmp); });
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
  if (target_dir.empty() || !is_main()) return;
  const fs::path link = fs::path(output_dir_) / name;
  const fs::path tmp = fs::path(output_dir_) / (name + ".tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove(tmp, ec);
  // Relative target: the output directory stays valid when moved or mounted elsewhere.
  fs::create_directory_symlink(fs::path(target_dir).filename(), tmp);
  fs::rename(tmp, link);  // atomic replace of the old link
  fsync_dir(output_dir_);
}

void Trainer::rotate_checkpoints() {
  auto all = list_checkpoints(output_dir_);
  const size_t keep = size_t(config_.keep_last_checkpoints);
  if (all.size() <= keep) return;
  for (size_t i = 0; i + keep < all.size(); ++i) {
    if (all[i].first == best_ckpt_step_) continue;
    std::error_code ec;
    fs::remove_all(all[i].second, ec);
    if (ec)
      log("could not delete old checkpoint " + all[i].second.string() + ": " + ec.message());
    else
      sink_.checkpoint_deleted(all[i].first, all[i].second.string());
  }
}

void Trainer::remove_stale_temp_dirs() {
  if (!is_main()) return;
  // Left by a process killed while saving: "<dir>.tmp-<pid>" / "<dir>.old-<pid>".
  static const std::regex re("(checkpoint-[0-9]+|latest|best|final)\\.(tmp|old)-([0-9]+)");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(output_dir_, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (!std::regex_match(name, m, re) || std::stol(m[3].str()) == long(::getpid())) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
  }
}

void Trainer::restore(const std::string& checkpoint_dir) {
  const fs::path d(checkpoint_dir);
  const fs::path state_path = d / kStateFile, opt_path = d / kOptimizerFile;
  if (!fs::exists(state_path))
    throw std::runtime_error(
        checkpoint_dir + ": " + kStateFile +
        " missing (not a training checkpoint; use --init-from for weights only)");
  if (!fs::exists(opt_path))
    throw std::runtime_error(checkpoint_dir + ": " + kOptimizerFile + " missing");
  json s;
  try {
    s = json::parse(read_file(state_path));
  } catch (const json::exception& e) {
    throw std::runtime_error(state_path.string() + ": invalid JSON: " + e.what());
  }
  try {
    if (sha256_file_hex(opt_path) != s.at("optimizer_sha256").get<std::string>())
      throw std::runtime_error(opt_path.string() +
                               ": checksum mismatch (corrupt or modified checkpoint)");
    auto file = SafetensorsFile::open(opt_path.string());  // validates offsets and sizes
    std::map<std::string, torch::Tensor> state;
    for (const auto& t : file.tensors()) {
      const auto dtype = t.dtype == StDtype::U8 ? torch::kUInt8 : torch::kFloat32;
      if (t.dtype != StDtype::U8 && t.dtype != StDtype::F32)
        throw std::runtime_error(opt_path.string() + ": tensor '" + t.name +
                                 "' has an unexpected dtype");
      state[t.name] = torch::from_blob(const_cast<void*>(file.data(t)), t.shape,
                                       torch::TensorOptions().dtype(dtype))
                          .clone();
    }
    optimizer_->load_state(state, s.at("adamw_steps").get<int64_t>());
    if (auto it = state.find("rng/cpu"); it != state.end()) {
      at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle: shares the state
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(it->second);
    }
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
