#include "core/train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "core/data/chat_metrics.h"
#include "core/distributed/gradient_reducer.h"
#include "core/distributed/process_group.h"
#include "core/model/checkpoint.h"
#include "core/task_eval/likelihood_scorer.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/chat_evaluation.h"
#include "core/train/checkpointed_forward.h"
#include "core/train/lora_training.h"

namespace ktl {

namespace fs = std::filesystem;

const char* train_status_name(TrainStatus s) {
  switch (s) {
    case TrainStatus::kCompleted:
      return "completed";
    case TrainStatus::kPaused:
      return "paused";
    case TrainStatus::kEarlyStopped:
      return "early_stopped";
    case TrainStatus::kStopped:
      return "stopped";
    case TrainStatus::kDiverged:
      return "diverged";
  }
  return "?";
}

namespace {

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = long(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Trainer::Trainer(TrainingConfig config, Transformer model, std::shared_ptr<Tokenizer> tokenizer,
                 TrainerData data, std::string output_dir, MetricsSink& sink, torch::Device device)
    : config_(std::move(config)),
      model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      data_(std::move(data)),
      output_dir_(std::move(output_dir)),
      sink_(sink),
      device_(device),
      schedule_(config_.learning_rate, config_.min_learning_rate, config_.warmup_steps,
                config_.max_steps),
      scaler_(false) {
  config_.validate();
  if (!data_.train && !data_.sft_train) throw std::invalid_argument("trainer: no training data");
  if (config_.max_seq_length > model_->config().max_seq_length)
    throw std::invalid_argument(
        "training max_seq_length " + std::to_string(config_.max_seq_length) +
        " exceeds the model's max_seq_length " + std::to_string(model_->config().max_seq_length));
  if (config_.lora_rank > 0 && !has_lora(*model_))
    throw std::invalid_argument("lora_rank > 0 but the model carries no adapter");
  check_distillation();
  // Frozen parameters (a LoRA base) stay out of the optimizer, the clipping and the reducer.
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : model_->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    named.emplace_back(p.key(), p.value());
    trainable_.push_back(p.value());
  }
  optimizer_ = std::make_unique<AdamW>(std::move(named), adamw_options(config_, device_));
  if (data_.sft_train) {
    if (data_.sft_train->seq_len() != config_.max_seq_length)
      throw std::invalid_argument("SFT rows must be max_seq_length long");
  } else {
    sampler_ = std::make_unique<TrainBatchSampler>(
        data_.train, config_.batch_size, config_.max_seq_length, uint64_t(config_.seed),
        config_.gradient_accumulation_steps, config_.overfit_batches);
  }
  if (data_.val && !data_.sft_train)
    eval_batches_ = std::make_unique<EvalBatches>(data_.val, config_.batch_size,
                                                  config_.max_seq_length, config_.eval_batches);
  // Task files are read now, so a missing one fails the run before its first step.
  for (const auto& [name, file] : parse_task_eval(config_)) {
    if (!tokenizer_) throw std::invalid_argument("task_eval needs the model's tokenizer");
    const std::string path = file.empty() ? default_task_path(name) : file;
    tasks_.push_back(load_mc_task(name, path, config_.task_eval_examples));
  }
  model_->train();
  // The global generator drives dropout (LoRA's); seeded so a fresh run repeats itself (a
  // resume restores its state from the checkpoint).
  torch::manual_seed(uint64_t(config_.seed));
  std::string why;
  const bool lora = has_lora(*model_);  // see store_lora_base_in_precision for `auto`
  if (config_.bf16 == "auto" && !config_.fp16 && device_.is_cpu() && !lora)
    precision_ = measure_precision(&why);
  else
    precision_ = choose_precision(config_, device_, &why);
  log("precision: " + why);
  if (auto line = store_lora_base_in_precision(*model_, precision_); !line.empty()) log(line);
  if (lora && !config_.gradient_checkpointing)
    log("LoRA: activations are most of this run's memory; --gradient-checkpointing cut "
        "model_small's peak 3x (3.3 -> 1.05 GB) for 20-40% of the speed (docs/training-guide.md, "
        "LoRA)");
  scaler_ = GradScaler(precision_ == Precision::kFp16);
}

void Trainer::check_distillation() {
  const bool want = !config_.distill_teacher.empty();
  if (want != bool(data_.teacher))
    throw std::invalid_argument(
        want ? "distill_teacher is set (" + config_.distill_teacher +
                   ") but no teacher was loaded: distillation runs through `ktl distill`"
             : "a teacher was given but distill_teacher is not set");
  if (!data_.teacher) return;
  if (data_.sft_train) throw std::invalid_argument("distillation trains on token shards, not SFT");
  const ModelConfig& t = data_.teacher->config();
  if (t.vocab_size != model_->config().vocab_size)
    throw std::invalid_argument("the teacher's vocabulary (" + std::to_string(t.vocab_size) +
                                ") differs from the student's (" +
                                std::to_string(model_->config().vocab_size) + ")");
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "distillation: teacher %s (%lld parameters, %d layers, hidden %d); loss %.3g * "
                "T^2 * KL + %.3g * CE at T %.3g, KL over %s",
                data_.teacher->identity().path.c_str(), (long long)t.num_parameters(), t.num_layers,
                t.hidden_size, config_.distill_alpha, 1.0 - config_.distill_alpha,
                config_.distill_temperature,
                config_.distill_top_k > 0
                    ? ("the teacher's top " + std::to_string(config_.distill_top_k)).c_str()
                    : "the whole vocabulary");
  log(buf);
}

Precision Trainer::measure_precision(std::string* why) {
  // Forward + backward on the first real batch (SFT rows for SFT); gradients are dropped,
  // weights untouched.
  std::vector<torch::Tensor> micro;  // [B, T+1]
  std::vector<SftBatch> sft_micro;
  if (data_.sft_train)
    sft_micro.push_back(data_.sft_train->train_batch(
        uint64_t(config_.seed), 0, 0, config_.batch_size, config_.gradient_accumulation_steps));
  else
    micro.push_back(sampler_->batch(0, 0));
  auto step = [&](Precision p) {
    precision_ = p;
    if (data_.sft_train)
      accumulate_sft_gradients(sft_micro);
    else
      accumulate_gradients(micro);
    optimizer_->zero_grad();
  };
  const Precision chosen = choose_precision_by_step_time(step, 1, 3, why, &precision_timing_);
  sink_.metric("precision/fp32_step_s", step_, precision_timing_.fp32_s);
  sink_.metric("precision/bf16_step_s", step_, precision_timing_.bf16_s);
  return chosen;
}

double Trainer::current_lr() const {
  if (config_.max_minutes <= 0) return schedule_.at(step_);
  return schedule_.at_progress(step_, budget_clock_ / (60.0 * config_.max_minutes));
}

bool Trainer::time_budget_spent() const {
  return config_.max_minutes > 0 && budget_clock_ >= 60.0 * config_.max_minutes;
}

int64_t Trainer::expected_total_steps() const {
  if (config_.max_minutes <= 0 || train_seconds_ <= 0 || step_ <= 0) return config_.max_steps;
  const double est = double(step_) * 60.0 * config_.max_minutes / train_seconds_;
  return std::max(step_, std::min(config_.max_steps, int64_t(est + 0.5)));
}

int64_t Trainer::tokens_per_step() const {
  return int64_t(config_.batch_size) * config_.gradient_accumulation_steps * config_.max_seq_length;
}

double Trainer::loop_tokens_per_s() const {
  const double loop_s = seconds_since(run_t0_) - aside_seconds_;
  const int64_t steps = step_ - run_start_step_;
  return loop_s > 0 && steps > 0 ? double(tokens_per_step() * steps) / loop_s : 0;
}

Trainer::~Trainer() = default;

void Trainer::log(const std::string& line) {
  sink_.log(line);
}

void Trainer::set_process_group(std::shared_ptr<ProcessGroup> pg) {
  if (!pg || pg->world_size() <= 1) return;
  if (data_.sft_train)
    throw std::invalid_argument("data-parallel SFT is not supported: run it as one process");
  sampler_ = std::make_unique<TrainBatchSampler>(
      data_.train, config_.batch_size, config_.max_seq_length, uint64_t(config_.seed),
      config_.gradient_accumulation_steps, config_.overfit_batches, pg->rank(), pg->world_size());
  pg_ = std::move(pg);
  // Rank 0's precision for all: `bf16: auto` measures matmul speed, which can differ per rank.
  const double chosen = pg_->sum(pg_->rank() == 0 ? double(int(precision_)) : 0.0);
  if (Precision(int(chosen + 0.5)) != precision_) {
    precision_ = Precision(int(chosen + 0.5));
    scaler_ = GradScaler(precision_ == Precision::kFp16);
  }
  const auto& dc = pg_->config();
  reducer_ = std::make_unique<GradientReducer>(pg_, trainable_, dc.bucket_mb, dc.overlap);
  reducer_->broadcast_parameters();
  const auto& st = reducer_->stats();
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "data parallel: rank %d of %d (%s), %d rows per micro-batch each, %d gradient "
                "buckets of <= %.1f MB (%.2f MB per step), overlap %s",
                pg_->rank(), pg_->world_size(), pg_->backend_name().c_str(),
                config_.batch_size / pg_->world_size(), st.buckets, dc.bucket_mb,
                double(st.bytes) / 1e6, dc.overlap ? "on" : "off");
  log(buf);
  const double probe = reducer_->probe_allreduce_seconds();
  sink_.metric("dist/allreduce_probe_ms", 0, 1e3 * probe);
  std::snprintf(buf, sizeof buf,
                "data parallel: one all-reduce of the %.2f MB of gradients takes %.1f ms here "
                "(%.2f GB/s of payload)",
                double(st.bytes) / 1e6, 1e3 * probe, double(st.bytes) / probe / 1e9);
  log(buf);
}

bool Trainer::is_main() const {
  return !pg_ || pg_->rank() == 0;
}

bool Trainer::agree_any(bool flag) {
  if (!pg_) return flag;
  return pg_->sum(flag ? 1.0 : 0.0) > 0.5;
}

torch::Tensor Trainer::micro_batch_loss(const torch::Tensor& inputs, const torch::Tensor& targets,
                                        double weight, torch::Tensor& kl_sum,
                                        torch::Tensor& ce_sum) {
  AutocastScope autocast(precision_, device_);
  // [b, T, D]
  auto h = training_hidden(*model_, inputs, torch::Tensor(), config_.gradient_checkpointing);
  if (!data_.teacher) return -target_logprobs(*model_, h, targets).mean();  // cross-entropy
  // The teacher sees the same inputs, without gradients, in this autocast.
  const DistillTargets t =
      data_.teacher->targets(inputs, config_.distill_top_k, config_.distill_temperature);
  DistillLossOptions o;
  o.alpha = config_.distill_alpha;
  o.temperature = config_.distill_temperature;
  auto hn = model_->norm(h).reshape({-1, h.size(2)});  // [b*T, D]
  const DistillLoss d = distill_loss(hn, model_->output_weight(), targets.reshape({-1}), t, o);
  auto kl = d.kl.mean() * weight, ce = d.ce.mean() * weight;
  kl_sum = kl_sum.defined() ? kl_sum + kl : kl;
  ce_sum = ce_sum.defined() ? ce_sum + ce : ce;
  return d.loss.mean();
}

double Trainer::accumulate_gradients(const std::vector<torch::Tensor>& micro_batches) {
  int64_t rows = 0;
  for (const auto& mb : micro_batches) rows += mb.size(0);
  // Summed as tensors: one host read per step, not per micro-batch.
  torch::Tensor loss_sum, kl_sum, ce_sum;
  for (size_t i = 0; i < micro_batches.size(); ++i) {
    const auto& cpu_mb = micro_batches[i];
    // Data parallel: the last backward of the step all-reduces buckets as they fill.
    if (reducer_) reducer_->arm(i + 1 == micro_batches.size());
    auto mb = cpu_mb.to(device_);  // [b, T+1]
    const auto T = mb.size(1) - 1;
    auto inputs = mb.narrow(1, 0, T), targets = mb.narrow(1, 1, T);  // [b, T]
    // Weight by rows so k micro-batches give the gradient of one batch k times larger.
    const double weight = double(mb.size(0)) / double(rows);
    auto loss = micro_batch_loss(inputs, targets, weight, kl_sum, ce_sum);
    (loss * (weight * scaler_.scale())).backward();
    auto w = loss.detach() * weight;
    loss_sum = loss_sum.defined() ? loss_sum + w : w;
  }
  double loss = loss_sum.defined() ? loss_sum.item<double>() : 0.0;
  last_kl_ = kl_sum.defined() ? kl_sum.item<double>() : 0.0;
  last_ce_ = ce_sum.defined() ? ce_sum.item<double>() : 0.0;
  if (reducer_) {
    reducer_->finish();  // every rank now holds the mean gradient of the global batch
    const double W = double(pg_->world_size());
    loss = pg_->sum(loss) / W;
    if (data_.teacher) last_kl_ = pg_->sum(last_kl_) / W, last_ce_ = pg_->sum(last_ce_) / W;
  }
  return loss;
}

double Trainer::accumulate_sft_gradients(const std::vector<SftBatch>& micro_batches) {
  int64_t total = 0;
  for (const auto& mb : micro_batches) total += (mb.targets != kIgnoreIndex).sum().item<int64_t>();
  if (total == 0) return 0.0;
  double loss_sum = 0;
  const bool packed = data_.sft_train->packed();
  for (const auto& mb : micro_batches) {
    torch::Tensor sum;
    {
      AutocastScope autocast(precision_, device_);
      sum = sft_loss_sum(*model_, mb, packed, nullptr, device_, config_.gradient_checkpointing);
    }
    auto loss = sum / double(total);  // mean over every assistant target of the step
    (loss * scaler_.scale()).backward();
    loss_sum += loss.item<double>();
  }
  return loss_sum;
}

double Trainer::train_step(double* grad_norm) {
  optimizer_->zero_grad();
  double loss = 0;
  if (data_.sft_train) {
    std::vector<SftBatch> micro;
    for (int m = 0; m < config_.gradient_accumulation_steps; ++m)
      micro.push_back(data_.sft_train->train_batch(uint64_t(config_.seed), step_, m,
                                                   config_.batch_size,
                                                   config_.gradient_accumulation_steps));
    loss = accumulate_sft_gradients(micro);
  } else {
    std::vector<torch::Tensor> micro;
    for (int m = 0; m < config_.gradient_accumulation_steps; ++m)
      micro.push_back(sampler_->batch(step_, m));
    loss = accumulate_gradients(micro);
  }
  auto& params = trainable_;
  const bool grads_finite = scaler_.unscale_and_check(params);
  if (scaler_.enabled() && !grads_finite) {
    // fp16 overflow: skip this update, shrink the scale, keep the step count moving.
    scaler_.update(true);
    if (grad_norm) *grad_norm = 0;
    ++step_;
    return loss;
  }
  const double norm = clip_grad_norm(params, config_.grad_clip);
  if (grad_norm) *grad_norm = norm;
  if (!std::isfinite(loss) || !std::isfinite(norm)) return loss;  // no update; run() stops
  optimizer_->step(current_lr());
  scaler_.update(false);
  ++step_;
  return loss;
}

EvalResult Trainer::evaluate_now() {
  if (data_.sft_val)
    return evaluate_sft(*model_, *data_.sft_val, config_.batch_size, precision_, device_);
  if (!eval_batches_) throw std::logic_error("trainer: no validation data");
  if (eval_chars_ < 0)
    eval_chars_ = tokenizer_ ? eval_batches_->count_target_chars(*tokenizer_) : 0;
  return evaluate(*model_, *eval_batches_, eval_chars_, precision_, device_);
}

void Trainer::maybe_eval(bool force, bool* early_stop) {
  if (!is_main()) return;
  if ((!eval_batches_ && !data_.sft_val) || (!force && last_eval_step_ == step_)) return;
  const auto t0 = std::chrono::steady_clock::now();
  EvalResult r = evaluate_now();
  last_eval_ = r;
  last_eval_step_ = step_;
  sink_.metric("val/loss", step_, r.loss);
  sink_.metric("val/ppl", step_, r.ppl);
  if (r.chars > 0) sink_.metric("val/bpc", step_, r.bpc);
  run_task_evals();
  const bool improved = best_step_ < 0 || r.loss < best_val_loss_;
  if (improved) {
    best_val_loss_ = r.loss;
    best_step_ = step_;
    evals_without_improvement_ = 0;
  } else {
    ++evals_without_improvement_;
  }
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "eval step %lld | val loss %.4f | ppl %.2f | bpc %.4f | %lld tokens, %lld chars | "
                "%.1fs%s",
                (long long)step_, r.loss, r.ppl, r.bpc, (long long)r.tokens, (long long)r.chars,
                seconds_since(t0), improved ? " | best" : "");
  log(buf);
  if (early_stop && config_.early_stopping_patience > 0 &&
      evals_without_improvement_ >= config_.early_stopping_patience) {
    *early_stop = true;
    log("early stopping: val loss has not improved for " +
        std::to_string(evals_without_improvement_) + " evaluations (best " +
        std::to_string(best_val_loss_) + " at step " + std::to_string(best_step_) + ")");
  }
}

void Trainer::run_task_evals() {
  for (const McTask& t : tasks_) {
    const auto t0 = std::chrono::steady_clock::now();
    McEvalOptions o;
    o.shots = config_.task_eval_shots;
    o.seed = uint64_t(config_.seed);
    o.batch_size = config_.batch_size * 2;
    const McScore s = evaluate_mc_task(model_, *tokenizer_, t, o, device_);
    sink_.metric("task/" + t.name + "/acc", step_, s.acc);
    sink_.metric("task/" + t.name + "/acc_norm", step_, s.acc_norm);
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "task %s | %d examples, %d-shot | acc %.4f | acc_norm %.4f | %.1fs",
                  t.name.c_str(), s.n, s.shots, s.acc, s.acc_norm, seconds_since(t0));
    log(buf);
  }
}

void Trainer::write_chat_samples() {
  std::vector<std::string> hyps, refs;
  for (const auto& c : data_.sample_chats) {
    if (c.messages.size() < 2 || c.messages.back().role != "assistant") continue;
    std::vector<ChatMessage> prompt(c.messages.begin(), c.messages.end() - 1);
    const std::string answer = generate_chat_reply(*model_, *data_.chat_template, *tokenizer_,
                                                   prompt, 64, precision_, device_);
    sink_.sample(step_, prompt.back().content, answer, "chat");
    hyps.push_back(answer);
    refs.push_back(c.messages.back().content);
  }
  if (hyps.empty()) return;
  const ScoreInterval f = chrf_interval(hyps, refs), r = rouge_l_interval(hyps, refs);
  sink_.metric("val/chrf", step_, f.value);
  sink_.metric("val/rouge_l", step_, r.value);
  log("chat samples step " + std::to_string(step_) + " | chrF " + format_interval(f) +
      " | ROUGE-L " + format_interval(r));
}

void Trainer::write_samples() {
  if (!tokenizer_ || !is_main()) return;
  if (data_.sft_train) {
    if (data_.chat_template) write_chat_samples();
    return;
  }
  const auto& prompts = sample_prompts();
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string greedy =
        generate_continuation(*model_, *tokenizer_, prompts[i], 40, 0.0, 0, 0, precision_, device_);
    sink_.sample(step_, prompts[i], greedy, "greedy");
    const uint64_t seed = mix64(uint64_t(config_.seed) ^ (uint64_t(step_) * 131 + i));
    const std::string sampled = generate_continuation(*model_, *tokenizer_, prompts[i], 40, 0.8, 50,
                                                      seed, precision_, device_);
    sink_.sample(step_, prompts[i], sampled, "sampled");
  }
}

void Trainer::log_progress(double loss, double grad_norm, double lr, double tokens_per_s,
                           const std::string& parts) {
  const double elapsed = train_seconds_;
  const int64_t done_here = step_ - run_start_step_;
  const double per_step = done_here > 0 ? elapsed_this_run_ / double(done_here) : 0;
  const double eta = per_step * double(expected_total_steps() - step_);
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "step %lld/%lld | loss %.4f%s | lr %.2e | grad norm %.3f | %.0f tok/s | loop %.0f "
                "tok/s excl. eval | elapsed %s | eta %s",
                (long long)step_, (long long)expected_total_steps(), loss, parts.c_str(), lr,
                grad_norm, tokens_per_s, loop_tokens_per_s(), fmt_duration(elapsed).c_str(),
                fmt_duration(eta).c_str());
  log(buf);
}

TrainResult Trainer::finish(TrainStatus status, std::string message) {
  TrainResult r;
  r.status = status;
  r.step = step_;
  r.last_checkpoint = last_checkpoint_;
  r.message = std::move(message);
  r.last_eval = last_eval_;
  if (step_ > run_start_step_) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "throughput: %.0f tok/s over the loop excluding eval, checkpoints and samples "
                  "(%.0f tok/s in the steps alone; %.1fs spent on eval/checkpoints/samples)",
                  loop_tokens_per_s(),
                  elapsed_this_run_ > 0
                      ? double(tokens_per_step() * (step_ - run_start_step_)) / elapsed_this_run_
                      : 0.0,
                  aside_seconds_);
    log(buf);
  }
  if (!r.message.empty()) log(r.message);
  sink_.flush();
  return r;
}

std::string Trainer::divergence_message(double loss, double grad_norm) const {
  std::ostringstream os;
  os << "training diverged at step " << step_ + 1 << ": "
     << (!std::isfinite(loss) ? "loss is " + std::to_string(loss)
                              : "gradient norm is " + std::to_string(grad_norm))
     << "; the last good checkpoint is "
     << (last_checkpoint_.empty() ? std::string("none (no checkpoint was saved yet)")
                                  : last_checkpoint_)
     << " (try a lower learning_rate, more warmup_steps or grad_clip)";
  return os.str();
}

void Trainer::report_interval(LogInterval& iv, double lr) {
  const double tps = iv.seconds > 0 ? double(tokens_per_step()) * iv.steps / iv.seconds : 0;
  const double mean_loss = iv.loss / iv.steps, mean_norm = iv.grad_norm / iv.steps;
  sink_.metric("train/loss", step_, mean_loss);
  sink_.metric("train/lr", step_, lr);
  sink_.metric("train/grad_norm", step_, mean_norm);
  sink_.metric("train/tokens_per_s", step_, tps);
  sink_.metric("train/loop_tokens_per_s", step_, loop_tokens_per_s());
  std::string parts;
  if (data_.teacher) {
    const double kl = iv.kl / iv.steps, ce = iv.ce / iv.steps;
    sink_.metric("train/kl", step_, kl);
    sink_.metric("train/ce", step_, ce);
    char buf[64];
    std::snprintf(buf, sizeof buf, " | kl %.4f | ce %.4f", kl, ce);
    parts = buf;
  }
  log_progress(mean_loss, mean_norm, lr, tps, parts);
  if (reducer_) report_distributed(iv);
  iv = LogInterval{};
}

void Trainer::report_distributed(const LogInterval& iv) {
  const auto& st = reducer_->stats();
  const double wait_ms = 1e3 * iv.comm_wait / iv.steps;
  // A ring all-reduce sends and receives 2 (W-1)/W times the payload per rank.
  const double W = pg_->world_size();
  const double wire_mb = double(st.bytes) * 2 * (W - 1) / W / 1e6;
  sink_.metric("dist/allreduce_wait_ms", step_, wait_ms);
  sink_.metric("dist/allreduce_mb_per_step", step_, double(st.bytes) / 1e6);
  sink_.metric("dist/wire_mb_per_step", step_, wire_mb);
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "dist: %d ranks | all-reduce wait %.1f ms/step | %.2f MB gradients/step "
                "(%.2f MB sent per rank) | %d/%d buckets launched during backward",
                pg_->world_size(), wait_ms, double(st.bytes) / 1e6, wire_mb, st.launched_early,
                st.buckets);
  log(buf);
}

TrainResult Trainer::run(int64_t until_step) {
  fs::create_directories(output_dir_);
  remove_stale_temp_dirs();
  run_start_step_ = step_;
  elapsed_this_run_ = 0;
  aside_seconds_ = 0;
  run_t0_ = std::chrono::steady_clock::now();
  const bool pause = until_step >= 0 && until_step < config_.max_steps;
  const int64_t end = pause ? until_step : config_.max_steps;
  // Eval, checkpoints and samples are timed apart so the loop rate excludes them.
  auto aside = [this](auto&& fn) {
    const auto t = std::chrono::steady_clock::now();
    fn();
    aside_seconds_ += seconds_since(t);
  };
  LogInterval iv;
  while (step_ < end) {
    if (agree_any(stop_requested_.load())) {
      aside([&] { save_checkpoint_now(false); });
      return finish(TrainStatus::kStopped, "stopped at step " + std::to_string(step_) +
                                               " on request; checkpoint " + last_checkpoint_);
    }
    if (config_.max_minutes > 0) {
      // Data parallel: every rank must take the same learning rate and stop at the same step,
      // so the clock is the ranks' mean step time, agreed once per step.
      budget_clock_ = pg_ ? pg_->sum(train_seconds_) / double(pg_->world_size()) : train_seconds_;
      if (time_budget_spent()) break;
    }
    const double lr = current_lr();
    const auto t0 = std::chrono::steady_clock::now();
    double norm = 0;
    const double loss = train_step(&norm);
    const double dt = seconds_since(t0);
    if (!std::isfinite(loss) || !std::isfinite(norm))
      return finish(TrainStatus::kDiverged, divergence_message(loss, norm));
    train_seconds_ += dt;
    elapsed_this_run_ += dt;
    iv.loss += loss, iv.grad_norm += norm, iv.seconds += dt, ++iv.steps;
    iv.kl += last_kl_, iv.ce += last_ce_;
    if (reducer_) iv.comm_wait += reducer_->stats().wait_seconds;
    sink_.progress(step_, expected_total_steps());
    if (step_ % config_.log_steps == 0 || step_ == end ||
        (config_.max_minutes > 0 && train_seconds_ >= 60.0 * config_.max_minutes))
      report_interval(iv, lr);
    bool early = false;
    if (config_.eval_steps > 0 && step_ % config_.eval_steps == 0) {
      aside([&] { maybe_eval(false, &early); });
      early = agree_any(early);  // rank 0 evaluated; everyone stops together
    }
    // Samples before the checkpoint of the same step: a run resumed from that checkpoint does
    // not redo its step's samples, so they must be stored (the save flushes) before it exists.
    if (config_.sample_steps > 0 && step_ % config_.sample_steps == 0)
      aside([&] { write_samples(); });
    if (config_.save_steps > 0 && step_ % config_.save_steps == 0)
      aside([&] { save_checkpoint_now(true); });
    if (early) {
      if (last_save_step_ != step_) aside([&] { save_checkpoint_now(true); });
      point_link("final", last_checkpoint_);
      return finish(TrainStatus::kEarlyStopped, "");
    }
  }
  if (pause) {
    if (last_save_step_ != step_) aside([&] { save_checkpoint_now(true); });
    return finish(TrainStatus::kPaused, "");
  }
  // The end: always leave an evaluated final checkpoint.
  if (config_.sample_steps > 0 && step_ % config_.sample_steps != 0)
    aside([&] { write_samples(); });
  if (last_save_step_ != step_) aside([&] { save_checkpoint_now(true); });
  point_link("final", last_checkpoint_);
  return finish(TrainStatus::kCompleted, "");
}

TrainerData open_training_data(const std::string& data_dir) {
  TrainerData d;
  const fs::path dir(data_dir);
  const fs::path train = dir / "train.bin", val = dir / "val.bin";
  if (!fs::exists(train))
    throw std::runtime_error(train.string() + " not found (run `ktl prepare-data` first)");
  d.train = open_token_shard(train.string());
  if (fs::exists(val)) d.val = open_token_shard(val.string());
  return d;
}

}  // namespace ktl
