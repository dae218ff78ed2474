// Direct Preference Optimization (Rafailov et al. 2023) on top of an SFT checkpoint:
//   loss = -log sigmoid(beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log
//   ref(y_l|x))])
// with log-probabilities summed over the reply tokens only (the final assistant turn and its
// <|end|>). The reference model is the starting policy, frozen: its log-probabilities are
// computed once up front. Reported: loss, reward margin (beta * difference above) and reward
// accuracy (share of pairs whose chosen reward beats the rejected one).
// Lifecycle: DpoTrainer is constructed with data, then run() once. Thread-safety: one thread.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/data/chat_data.h"
#include "core/model/model.h"
#include "core/train/metrics_sink.h"
#include "core/train/sft_batches.h"

namespace ktl {

class Tokenizer;

struct DpoConfig {
  double beta = 0.1;            // strength of the KL anchor to the reference
  double learning_rate = 5e-6;  // peak; linear warmup then cosine to a tenth
  int warmup_steps = 10;        // linear warmup steps
  int64_t max_steps = 200;      // optimizer steps
  int batch_size = 8;           // preference pairs per step
  int max_seq_length = 256;     // prompt + reply tokens; longer pairs are dropped
  int eval_steps = 50;          // held-out evaluation every N steps (and at the end)
  int log_steps = 10;           // progress line every N steps
  double grad_clip = 1.0;       // global gradient-norm clip
  double weight_decay = 0.0;    // AdamW decay on matrices
  int64_t seed = 1234;          // batch order
};

struct DpoStats {
  double loss = 0, reward_margin = 0, reward_accuracy = 0, chosen_reward = 0, rejected_reward = 0;
  int64_t pairs = 0;
};

// The DPO loss of a batch (mean) and its statistics. All inputs [B] summed log-probabilities.
torch::Tensor dpo_loss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                       const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected,
                       double beta, DpoStats* stats = nullptr);

// Summed log-probability of the target tokens of each row of `b` (labels -100 ignored): [B].
torch::Tensor reply_logprobs(TransformerImpl& model, const SftBatch& b,
                             const torch::Device& device);

// Renders prompt + reply with the template; the mask covers only the final reply (and its
// <|end|>), not earlier assistant turns of the prompt.
TokenizedChat render_preference_reply(const ChatTemplate& tmpl,
                                      const std::vector<ChatMessage>& prompt,
                                      const std::string& reply);

class DpoTrainer {
 public:
  DpoTrainer(DpoConfig cfg, Transformer policy, Transformer reference,
             std::shared_ptr<const ChatTemplate> tmpl, const std::vector<PreferencePair>& train,
             const std::vector<PreferencePair>& val, MetricsSink& sink, torch::Device device);

  // Trains max_steps; returns the last held-out statistics (train statistics when no val).
  DpoStats run();
  // Loss and rewards over a whole split with the current policy (no grad).
  DpoStats evaluate_train() { return evaluate(train_); }
  DpoStats evaluate_val() { return evaluate(val_); }
  int64_t num_train_pairs() const { return train_.n; }
  int64_t num_val_pairs() const { return val_.n; }
  int64_t dropped_pairs() const { return dropped_; }

 private:
  struct Split {
    std::unique_ptr<SftBatches> chosen, rejected;  // row i of each is pair i
    torch::Tensor ref_chosen, ref_rejected;        // [n] reference log-probs
    int64_t n = 0;
  };
  Split build(const std::vector<PreferencePair>& pairs);
  DpoStats evaluate(const Split& s);

  DpoConfig cfg_;
  Transformer policy_, reference_;
  std::shared_ptr<const ChatTemplate> tmpl_;
  MetricsSink& sink_;
  torch::Device device_;
  Split train_, val_;
  int64_t dropped_ = 0;
};

}  // namespace ktl
