// Preference tuning of an SFT checkpoint on {prompt, chosen, rejected} pairs, with one of two
// losses (log-probabilities are over the reply tokens only: the final assistant turn and its
// end-of-turn token):
//   dpo   Direct Preference Optimization (Rafailov et al. 2023):
//           -log sigmoid(beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log
//           ref(y_l|x))])
//         with summed log-probabilities. The reference is the starting policy, frozen: a pair's
//         reference log-probabilities are computed once, when the pair is first used (a
//         200-step run over a 10,000-pair file computes those of the ~1,500 pairs it draws, not
//         all of them), cached and kept in every checkpoint; the reference model is released
//         once every pair has them.
//   orpo  ORPO (Hong et al. 2024), reference-free: NLL of the chosen reply + lambda * odds-ratio
//         term, -log sigmoid(log odds(y_w|x) - log odds(y_l|x)), where odds(y|x) = P / (1 - P)
//         and P = exp(mean log-probability per reply token). No reference pass, no second model.
// Reported: loss, reward accuracy (share of pairs whose chosen reward beats the rejected one),
// reward margin, chosen and rejected rewards (dpo: beta * log-ratio to the reference; orpo:
// lambda * mean log-probability per token, as TRL reports them), and for orpo the NLL and the
// mean log odds ratio.
//
// The loop is the trainer's (core/train/trainer.h) with the same pieces: AdamW, warmup + cosine
// schedule (or a max_minutes time budget), gradient accumulation (k micro-batches give the
// gradient of one batch k times larger, exactly), global-norm clipping, bf16 autocast ("auto"
// times real steps), periodic checkpoints in the trainer's layout (core/train/run_directory.h:
// optimizer state, trainer_state.json, training_config.yaml, `latest`, rotation, `final` at
// the end), the metrics sink flushed before each checkpoint, restore() to resume, and a stop
// request (SIGTERM in the CLI) that checkpoints and returns. A step's pairs are a seeded hash of
// (seed, step, row), so a resumed run sees the same pairs and, with deterministic kernels, ends
// with the same weights as an uninterrupted one.
//
// Lifecycle: construct (pairs tokenized) -> [restore(dir)] -> run() once. Thread-safety: one
// thread, except request_stop() (any thread or a signal handler: an atomic store).
#pragma once

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/data/chat_data.h"
#include "core/model/model.h"
#include "core/train/adamw.h"
#include "core/train/lr_schedule.h"
#include "core/train/metrics_sink.h"
#include "core/train/mixed_precision.h"
#include "core/train/sft_batches.h"
#include "core/train/trainer.h"
#include "core/train/training_config.h"

namespace ktl {

class Tokenizer;

enum class PreferenceLoss { kDpo, kOrpo };
const char* preference_loss_name(PreferenceLoss l);  // "dpo", "orpo"
// The inverse; std::invalid_argument naming the accepted names.
PreferenceLoss parse_preference_loss(const std::string& name);

struct DpoConfig {
  // Steps, batch, accumulation, learning rate, clipping, decay, precision, checkpoints... as for
  // the trainer. Unsupported here (refused by validate()): early_stopping_patience,
  // overfit_batches, task_eval, sample_steps.
  TrainingConfig train = dpo_training_defaults();
  PreferenceLoss loss = PreferenceLoss::kDpo;
  double beta = 0.1;         // dpo: strength of the KL anchor to the reference
  double orpo_lambda = 0.1;  // orpo: weight of the odds-ratio term
  void validate() const;     // std::invalid_argument naming the setting
};

struct DpoStats {
  double loss = 0, reward_margin = 0, reward_accuracy = 0, chosen_reward = 0, rejected_reward = 0;
  double nll = 0, log_odds = 0;  // orpo only
  int64_t pairs = 0;
};

// The DPO loss of a batch (mean) and its statistics. All inputs [B] summed log-probabilities.
torch::Tensor dpo_loss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                       const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected,
                       double beta, DpoStats* stats = nullptr);

// The ORPO loss of a batch (mean over pairs of NLL(y_w) + lambda * L_OR) and its statistics.
// Inputs [B]: summed reply log-probabilities and reply token counts of each side.
torch::Tensor orpo_loss(const torch::Tensor& chosen_logp_sum,
                        const torch::Tensor& rejected_logp_sum, const torch::Tensor& chosen_tokens,
                        const torch::Tensor& rejected_tokens, double lambda,
                        DpoStats* stats = nullptr);

// Summed log-probability of the target tokens of each row of `b` (labels -100 ignored): [B].
torch::Tensor reply_logprobs(TransformerImpl& model, const SftBatch& b, const torch::Device& device,
                             bool checkpoint_blocks = false);
// Target tokens of each row of `b`: [B] float.
torch::Tensor reply_token_counts(const SftBatch& b);

// Renders prompt + reply with the template; the mask covers only the final reply (and its
// end-of-turn token), not earlier assistant turns of the prompt.
TokenizedChat render_preference_reply(const ChatTemplate& tmpl,
                                      const std::vector<ChatMessage>& prompt,
                                      const std::string& reply);

struct DpoResult {
  TrainStatus status = TrainStatus::kCompleted;  // kCompleted, kStopped or kDiverged
  int64_t step = 0;
  std::string last_checkpoint;  // newest checkpoint directory ("" if none)
  std::string split;  // "val", or "train" (its first eval_batches x batch_size pairs) without one
  DpoStats last;      // that split's statistics at the end
  std::string message;
};

class DpoTrainer {
 public:
  // `policy` on `device`, in training. `reference` (frozen, same start as the policy) is needed
  // by dpo unless restore() finds every pair's reference log-probabilities in the checkpoint;
  // orpo never uses it (pass nullptr). Without it a missing log-probability throws. A policy
  // carrying a LoRA adapter (lora_rank > 0) needs none: its reference is the policy with the
  // adapter switched off (LoraOffScope), so no second copy of the model is held; only the
  // adapter trains and checkpoints are adapter-only (set_lora_base before run()).
  // Throws std::invalid_argument on a bad config, std::runtime_error when no pair fits
  // max_seq_length.
  DpoTrainer(DpoConfig cfg, Transformer policy, Transformer reference,
             std::shared_ptr<Tokenizer> tokenizer, std::shared_ptr<const ChatTemplate> tmpl,
             const std::vector<PreferencePair>& train, const std::vector<PreferencePair>& val,
             std::string output_dir, MetricsSink& sink, torch::Device device);
  ~DpoTrainer();

  // Restores the optimizer, step, clock, precision and reference log-probabilities from a
  // checkpoint this class wrote (weights are loaded by the caller). Throws std::runtime_error
  // naming the checkpoint when it was trained with another loss or other pairs.
  void restore(const std::string& checkpoint_dir);
  // Trains to max_steps (or the time budget); checkpoints every save_steps and at the end.
  DpoResult run();
  void request_stop() { stop_requested_.store(true); }
  // A string stored in every checkpoint's meta.json "extra" (the CLI records its inputs).
  void set_checkpoint_note(const std::string& key, const std::string& value);
  void set_lora_base(LoraBaseRef base) { lora_base_ = std::move(base); }

  // Pieces, public for tests. One optimizer step over batch_size x accumulation pairs; returns
  // the loss (NaN/inf reported, no update). grad_norm gets the pre-clip norm.
  double train_step(DpoStats* stats = nullptr, double* grad_norm = nullptr);
  // Statistics over a whole split with the current policy (no grad).
  DpoStats evaluate_train();
  DpoStats evaluate_val();
  std::string save_checkpoint_now();

  int64_t step() const { return step_; }
  Precision precision() const { return precision_; }
  int64_t num_train_pairs() const { return train_.n; }
  int64_t num_val_pairs() const { return val_.n; }
  int64_t dropped_pairs() const { return dropped_; }
  TransformerImpl& policy() { return *policy_; }

 private:
  struct Split {
    std::unique_ptr<SftBatches> chosen, rejected;  // row i of each is pair i
    torch::Tensor ref_chosen, ref_rejected;        // [n] reference log-probs (dpo; NaN = not yet)
    int64_t n = 0;
  };
  struct Interval {  // sums since the last progress line
    DpoStats stats;
    double grad_norm = 0, seconds = 0;
    int steps = 0;
  };
  Split build(const std::vector<PreferencePair>& pairs, uint64_t* fingerprint);
  void resolve_precision();
  // Reference log-probabilities of `rows` not computed yet, in one no-grad batch; the reference
  // model is released once every pair has them.
  void fill_reference(Split& s, const std::vector<int64_t>& rows);
  int64_t count_reference() const;  // pairs whose reference log-probabilities are known
  bool reference_complete() const;
  std::vector<int64_t> step_rows(int64_t step, int micro) const;
  torch::Tensor batch_loss(Split& s, const std::vector<int64_t>& rows, DpoStats* st);
  DpoStats evaluate(Split& s, int64_t limit = 0);  // the first `limit` pairs (0: all)
  double current_lr() const;
  bool budget_spent() const;
  void report(const char* split, const DpoStats& st, double lr, double grad_norm,
              double pairs_per_s);
  void report_interval(Interval& iv, double lr);
  void maybe_eval(bool force);
  void write_state_files(const std::string& dir) const;
  DpoResult finish(TrainStatus status, std::string message);

  DpoConfig cfg_;
  Transformer policy_, reference_;
  std::shared_ptr<Tokenizer> tokenizer_;
  std::shared_ptr<const ChatTemplate> tmpl_;
  std::string output_dir_;
  MetricsSink& sink_;
  torch::Device device_;
  Split train_, val_;
  int64_t dropped_ = 0;
  std::string fingerprint_;  // of the tokenized pairs: a resume must see the same ones
  std::vector<torch::Tensor> trainable_;  // what the optimizer updates (LoRA: the adapter)
  bool lora_ = false;                     // reference = the policy with its adapter off
  std::optional<LoraBaseRef> lora_base_;
  std::unique_ptr<AdamW> optimizer_;
  LrSchedule schedule_;
  GradScaler scaler_;
  Precision precision_ = Precision::kFp32;
  bool precision_resolved_ = false;
  std::map<std::string, std::string> notes_;

  int64_t step_ = 0;
  double train_seconds_ = 0;  // steps only; survives resume (the time budget's clock)
  int64_t ref_computed_ = 0;  // reference log-probabilities computed by this run
  double ref_seconds_ = 0;
  int64_t last_eval_step_ = -1, last_save_step_ = -1;
  DpoStats last_eval_;
  std::string last_checkpoint_;
  std::atomic<bool> stop_requested_{false};
};

// What a checkpoint written by DpoTrainer says about its run (trainer_state.json "dpo"): loss,
// beta, orpo_lambda, and whether it holds every pair's reference log-probabilities. Throws like
// read_trainer_state, and std::runtime_error when the checkpoint is not a dpo one.
struct DpoCheckpointInfo {
  PreferenceLoss loss = PreferenceLoss::kDpo;
  double beta = 0.1, orpo_lambda = 0.1;
  bool reference_complete = false;  // a resume needs no reference model
};
DpoCheckpointInfo read_dpo_checkpoint_info(const std::string& checkpoint_dir);

}  // namespace ktl
