// Supervised fine-tuning batches: conversations rendered by the chat template, labels -100 on
// every token that is not an assistant reply token, and (by default) several conversations
// packed into one row with a segment id per position so attention and RoPE positions never
// cross a conversation (TransformerImpl::forward_packed). --no-pack puts one conversation per
// row, padded. Rows are built once; a training batch for (step, micro_step) is a pure function
// of the seed, so a resumed run sees the same batches. Thread-safety: immutable after
// construction; every method const.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace ktl {

class ChatTemplate;
struct ChatConversation;

// One rendered conversation: ids and 1 on assistant reply tokens.
struct TokenizedChat {
  std::vector<int64_t> ids;
  std::vector<uint8_t> mask;
};

struct SftBatch {
  torch::Tensor inputs;    // [B, T] int64
  torch::Tensor targets;   // [B, T] int64, -100 where no loss
  torch::Tensor segments;  // [B, T] int64, conversation id within the row (-1 padding)
};

constexpr int64_t kIgnoreIndex = -100;

// Renders every conversation. One longer than max_tokens loses its oldest exchanges (user turn
// and answer; the system message and the last exchange stay); a last exchange that is still too
// long is cut at its end. *truncated counts the conversations that lost anything.
std::vector<TokenizedChat> tokenize_conversations(const ChatTemplate& tmpl,
                                                  const std::vector<ChatConversation>& convs,
                                                  int64_t max_tokens, int64_t* truncated = nullptr);

class SftBatches {
 public:
  // seq_len is T (positions per row). A conversation of n tokens fills n - 1 positions.
  SftBatches(const std::vector<TokenizedChat>& chats, int seq_len, bool pack);

  int64_t num_rows() const { return int64_t(rows_.size()); }
  bool packed() const { return pack_; }
  int seq_len() const { return seq_len_; }
  int64_t num_target_tokens() const { return target_tokens_; }
  int64_t num_conversations() const { return conversations_; }

  // The given rows as one batch. Unpacked batches are cut to their longest row (padding past it
  // carries no target and, being after every conversation, changes no logit).
  SftBatch rows(const std::vector<int64_t>& row_indices) const;
  // batch_size rows chosen by a seeded hash of (step, micro_step).
  SftBatch train_batch(uint64_t seed, int64_t step, int micro_step, int batch_size,
                       int accumulation_steps) const;
  // Consecutive rows [first, first + n) (clamped), for evaluation.
  SftBatch range(int64_t first, int64_t n) const;

 private:
  struct Row {
    std::vector<int64_t> inputs, targets, segments;
    int64_t used = 0;  // positions before the padding
  };
  std::vector<Row> rows_;
  int seq_len_;
  bool pack_;
  int64_t target_tokens_ = 0, conversations_ = 0;
};

}  // namespace ktl
