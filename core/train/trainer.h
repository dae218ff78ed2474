// The training loop: AdamW + warmup/cosine schedule, gradient accumulation, global-norm
// clipping, mixed precision, optional gradient checkpointing, periodic evaluation, samples and
// checkpoints (keep last K + best by val loss), early stopping, a NaN/inf guard and a graceful
// stop on request (SIGTERM in the CLI).
//
// Output directory layout:
//   checkpoint-<step>/   model (core/model/checkpoint.h) + optimizer.safetensors,
//   trainer_state.json,
//                        training_config.yaml
//   latest -> checkpoint-<newest>   (what the server and `--resume-from` usually want)
//   best   -> checkpoint-<lowest val loss>
//   final  -> checkpoint-<last step>  (only after a run that reached its end)
//
// Lifecycle (enum class TrainStatus): construct -> [restore(dir)] -> run() once, which returns
// kCompleted (max_steps reached), kPaused (run(until) reached `until` < max_steps, with an
// evaluated checkpoint there), kEarlyStopped, kStopped (request_stop()) or kDiverged.
//
// Throughput: every progress line gives the step rate and the loop rate (tokens over the
// loop's wall time minus evaluation, checkpoint and sample time: data, logging, metrics and
// gradient-norm work included), so `ktl train` compares directly with `ktl bench-train`.
//
// Data parallel (set_process_group): every rank runs the same loop on its rows of each global
// batch; gradients are averaged by a bucketed all-reduce overlapped with backward
// (core/distributed/gradient_reducer.h), the loss and the stop request are agreed each step,
// and only rank 0 evaluates, writes checkpoints, metrics and samples.
// Thread-safety: run() and the step functions from one thread; request_stop() from any thread
// or a signal handler (it only stores an atomic flag).
#pragma once

#include <torch/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/adapters/lora_checkpoint.h"
#include "core/data/chat_data.h"
#include "core/model/model.h"
#include "core/task_eval/mc_task.h"
#include "core/train/adamw.h"
#include "core/train/data_loader.h"
#include "core/train/distill_teacher.h"
#include "core/train/evaluation.h"
#include "core/train/lr_schedule.h"
#include "core/train/metrics_sink.h"
#include "core/train/mixed_precision.h"
#include "core/train/sft_batches.h"
#include "core/train/training_config.h"

namespace ktl {

class Tokenizer;
class ProcessGroup;
class GradientReducer;

enum class TrainStatus { kCompleted, kPaused, kEarlyStopped, kStopped, kDiverged };
const char* train_status_name(TrainStatus s);

struct TrainResult {
  TrainStatus status = TrainStatus::kCompleted;
  int64_t step = 0;             // optimizer steps completed
  std::string last_checkpoint;  // newest checkpoint directory ("" if none)
  std::string message;          // e.g. the divergence message
  std::optional<EvalResult> last_eval;
};

struct TrainerData {
  std::shared_ptr<const TokenSource> train;
  std::shared_ptr<const TokenSource> val;  // may be null: no evaluation
  // Supervised fine-tuning instead of token shards (`ktl sft`): chat rows with assistant-only
  // labels. When sft_train is set, train/val above are unused.
  std::shared_ptr<const SftBatches> sft_train, sft_val;
  std::shared_ptr<const ChatTemplate> chat_template;  // for chat samples
  // Held-out conversations whose last user turn is answered at each sample step; the answers
  // are scored (val/chrf, val/rouge_l) against the references.
  std::vector<ChatConversation> sample_chats;
  // Distillation (config distill_teacher set): the teacher run on every token-shard batch; the
  // loss is then core/train/distill_loss.h's, with train/kl and train/ce logged beside it.
  std::shared_ptr<DistillTeacher> teacher;
};

class Trainer {
 public:
  // `model` must already be on `device`; precision is resolved from the config.
  Trainer(TrainingConfig config, Transformer model, std::shared_ptr<Tokenizer> tokenizer,
          TrainerData data, std::string output_dir, MetricsSink& sink, torch::Device device);
  ~Trainer();

  // LoRA (config lora_rank > 0): the model must carry the adapter already (attach_training_lora)
  // and only its parameters train; checkpoints are adapter-only (core/adapters/lora_checkpoint.h)
  // naming `base`, which must be set before run().
  void set_lora_base(LoraBaseRef base) { lora_base_ = std::move(base); }

  // Restores optimizer, scheduler position, data position and counters from a checkpoint
  // written by this trainer (the weights are loaded by the caller through load_checkpoint).
  // Throws std::runtime_error naming the file on a missing, truncated or corrupt state, and
  // when the checkpoint was distilled from another teacher than this run's.
  void restore(const std::string& checkpoint_dir);

  // Joins a data-parallel job (before restore() and run()): copies rank 0's weights to every
  // rank and reads only this rank's rows of each batch. Throws when batch_size is not a
  // multiple of the world size, or DistError when the broadcast fails.
  void set_process_group(std::shared_ptr<ProcessGroup> pg);
  bool is_main() const;  // rank 0 (or no process group)

  // Trains to max_steps, or only to `until_step` when 0 <= until_step < max_steps (the LR
  // schedule still spans max_steps: a sweep rung, continued later by restore()).
  TrainResult run(int64_t until_step = -1);
  void request_stop() { stop_requested_.store(true); }

  // Pieces of a step, public for tests.
  // Forward + backward over the micro-batches (each [b, T+1]); returns the mean loss.
  // Gradients accumulate into .grad scaled so k equal micro-batches equal one big batch.
  double accumulate_gradients(const std::vector<torch::Tensor>& micro_batches);
  // SFT: the mean loss over all assistant targets of the micro-batches.
  double accumulate_sft_gradients(const std::vector<SftBatch>& micro_batches);
  // One full optimizer step at the current step; returns the loss (NaN/inf is reported, not
  // thrown). grad_norm receives the pre-clip global norm.
  double train_step(double* grad_norm = nullptr);
  EvalResult evaluate_now();
  std::string save_checkpoint_now(bool with_eval_metrics);

  int64_t step() const { return step_; }
  Precision precision() const { return precision_; }
  // Step times bf16 "auto" measured (zeros when precision was not measured).
  const PrecisionTiming& precision_timing() const { return precision_timing_; }
  // Tokens/s over this run's loop excluding eval, checkpoints and samples (0 before a step).
  double loop_tokens_per_s() const;
  TransformerImpl& model() { return *model_; }
  const TrainingConfig& config() const { return config_; }

 private:
  void log(const std::string& line);
  void check_distillation();  // the teacher fits this run (constructor); logs its settings
  struct LogInterval {        // sums since the last progress line
    double loss = 0, grad_norm = 0, seconds = 0, comm_wait = 0, kl = 0, ce = 0;
    int steps = 0;
  };
  void report_distributed(const LogInterval& iv);
  bool agree_any(bool flag);  // true on every rank when it is true on any
  void log_progress(double loss, double grad_norm, double lr, double tokens_per_s,
                    const std::string& parts);
  // inputs, targets [b, T] -> the micro-batch's mean loss (scalar; distillation: also adds its
  // mean KL and CE, times `weight`, to kl_sum / ce_sum).
  torch::Tensor micro_batch_loss(const torch::Tensor& inputs, const torch::Tensor& targets,
                                 double weight, torch::Tensor& kl_sum, torch::Tensor& ce_sum);
  Precision measure_precision(std::string* why);
  double current_lr() const;             // the schedule at step_ (by time under max_minutes)
  bool time_budget_spent() const;        // max_minutes set and reached
  int64_t expected_total_steps() const;  // max_steps, or the budget's estimate at this rate
  int64_t tokens_per_step() const;
  void report_interval(LogInterval& iv, double lr);
  std::string divergence_message(double loss, double grad_norm) const;
  void maybe_eval(bool force, bool* early_stop);
  void run_task_evals();  // task_eval: accuracy by likelihood, logged as task/<name>/acc
  void write_samples();
  void write_chat_samples();
  void rotate_checkpoints();
  void point_link(const std::string& name, const std::string& target_dir);
  void write_state_files(const std::string& dir) const;
  void remove_stale_temp_dirs();
  TrainResult finish(TrainStatus status, std::string message);

  TrainingConfig config_;
  Transformer model_;
  std::shared_ptr<Tokenizer> tokenizer_;
  TrainerData data_;
  std::string output_dir_;
  MetricsSink& sink_;
  torch::Device device_;
  Precision precision_ = Precision::kFp32;
  PrecisionTiming precision_timing_;
  std::vector<torch::Tensor> trainable_;  // what the optimizer updates (LoRA: the adapter)
  std::optional<LoraBaseRef> lora_base_;
  std::unique_ptr<AdamW> optimizer_;
  LrSchedule schedule_;
  GradScaler scaler_;
  std::unique_ptr<TrainBatchSampler> sampler_;
  std::unique_ptr<EvalBatches> eval_batches_;
  int64_t eval_chars_ = -1;    // computed on first evaluation
  std::vector<McTask> tasks_;  // task_eval, loaded once at construction (main rank)

  int64_t step_ = 0;  // optimizer steps completed
  double best_val_loss_ = 0;
  int64_t best_step_ = -1;
  int evals_without_improvement_ = 0;
  int64_t last_eval_step_ = -1;
  int64_t last_save_step_ = -1;
  std::optional<EvalResult> last_eval_;
  std::string last_checkpoint_;
  int64_t best_ckpt_step_ = -1;  // checkpoint `best` points to
  double best_ckpt_val_loss_ = 0;
  double train_seconds_ = 0;  // excludes eval/save/sample time; survives resume
  double budget_clock_ = 0;   // max_minutes: train_seconds_ (ranks' mean) at this step's start
  double elapsed_this_run_ = 0;
  std::chrono::steady_clock::time_point run_t0_{};  // run() began
  double aside_seconds_ = 0;                        // this run's eval, checkpoint and sample time
  int64_t run_start_step_ = 0;
  double last_kl_ = 0, last_ce_ = 0;  // distillation: the last step's mean KL and CE
  std::atomic<bool> stop_requested_{false};
  std::shared_ptr<ProcessGroup> pg_;
  std::unique_ptr<GradientReducer> reducer_;
};

// Reads DATA_DIR/{train,val}.bin (val optional) for a Trainer.
TrainerData open_training_data(const std::string& data_dir);

}  // namespace ktl
