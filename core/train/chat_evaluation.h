// Chat evaluation for SFT/DPO: assistant-token loss (labels -100 elsewhere), greedy chat
// answers that stop at the end-of-turn token, and chrF / ROUGE-L of those answers against the
// references with bootstrap 95% intervals (core/data/chat_metrics.h).
// Thread-safety: as the model's forward.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/data/chat_data.h"
#include "core/data/chat_metrics.h"
#include "core/model/model.h"
#include "core/train/evaluation.h"
#include "core/train/mixed_precision.h"
#include "core/train/sft_batches.h"

namespace ktl {

class Tokenizer;

// Cross-entropy summed over the non-ignored targets of `b`, and their count. Packed batches go
// through the packed attention mask, unpacked ones through the causal one (padding is after
// each conversation, so a causal mask alone keeps it invisible), with per-block gradient
// checkpointing when `checkpoint_blocks`; the head runs a chunk of rows at a time.
torch::Tensor sft_loss_sum(TransformerImpl& model, const SftBatch& b, bool packed,
                           int64_t* n_targets, const torch::Device& device,
                           bool checkpoint_blocks = false);

// Mean assistant-token loss (and perplexity) over every row of `batches`; bpc stays 0.
EvalResult evaluate_sft(TransformerImpl& model, const SftBatches& batches, int batch_size,
                        Precision precision, const torch::Device& device);

// Greedy reply to `messages` (ending with a user turn), rendered by the template with a
// generation prompt; stops at <|end|> or </s>. Full recompute per token (no KV cache).
std::string generate_chat_reply(TransformerImpl& model, const ChatTemplate& tmpl,
                                const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                int max_new_tokens, Precision precision,
                                const torch::Device& device);

struct ChatAnswer {
  std::string prompt, reference, answer;
};

struct ChatEvalResult {
  EvalResult loss;  // assistant tokens of the held-out conversations
  double chrf = 0, rouge_l = 0;
  // The same scores with their 95% percentile-bootstrap intervals over the answers (1000
  // resamples, seed 1234) and n = the number of answers scored.
  ScoreInterval chrf_ci, rouge_l_ci;
  std::vector<ChatAnswer> answers;  // the first max_answers held-out conversations
};

// Answers the last user turn of up to max_answers conversations (everything before the last
// assistant reply is the prompt) and scores them; the loss runs over all `convs`.
ChatEvalResult evaluate_chat(TransformerImpl& model, const ChatTemplate& tmpl, const Tokenizer& tok,
                             const std::vector<ChatConversation>& convs, int seq_len,
                             int batch_size, int max_answers, int max_new_tokens,
                             Precision precision, const torch::Device& device);

}  // namespace ktl
