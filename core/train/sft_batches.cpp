#include "core/train/sft_batches.h"

#include <cstddef>

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

#include "core/data/chat_data.h"
#include "core/tokenizer/chat_template.h"
#include "core/train/data_loader.h"

namespace ktl {

std::vector<TokenizedChat> tokenize_conversations(const ChatTemplate& tmpl,
                                                  const std::vector<ChatConversation>& convs,
                                                  int64_t max_tokens, int64_t* truncated) {
  std::vector<TokenizedChat> out;
  out.reserve(convs.size());
  int64_t cut = 0;
  for (const auto& c : convs) {
    std::vector<ChatMessage> msgs = c.messages;
    RenderedChat r = tmpl.render(msgs, false);
    const size_t first = !msgs.empty() && msgs[0].role == "system" ? 1 : 0;
    // Too long: the oldest exchange (a user turn and its answer) goes first, the system
    // message and the last exchange stay, so what is trained on is the conversation's end.
    while (int64_t(r.ids.size()) > max_tokens && msgs.size() > first + 2) {
      msgs.erase(msgs.begin() + static_cast<std::ptrdiff_t>(first),
                 msgs.begin() + static_cast<std::ptrdiff_t>(first + 2));
      r = tmpl.render(msgs, false);
    }
    TokenizedChat t;
    t.ids.assign(r.ids.begin(), r.ids.end());
    t.mask = std::move(r.assistant_mask);
    if (int64_t(t.ids.size()) > max_tokens) {  // one exchange alone is too long: cut its end
      t.ids.resize(size_t(max_tokens));
      t.mask.resize(size_t(max_tokens));
    }
    if (msgs.size() != c.messages.size() || int64_t(r.ids.size()) > max_tokens) ++cut;
    out.push_back(std::move(t));
  }
  if (truncated) *truncated = cut;
  return out;
}

SftBatches::SftBatches(const std::vector<TokenizedChat>& chats, int seq_len, bool pack)
    : seq_len_(seq_len), pack_(pack) {
  if (seq_len < 2) throw std::invalid_argument("SFT: seq_len must be at least 2");
  Row cur;
  int64_t segment = 0;
  auto flush = [&] {
    if (cur.inputs.empty()) return;
    cur.used = int64_t(cur.inputs.size());
    const size_t pad = size_t(seq_len_) - cur.inputs.size();
    cur.inputs.insert(cur.inputs.end(), pad, 0);
    cur.targets.insert(cur.targets.end(), pad, kIgnoreIndex);
    cur.segments.insert(cur.segments.end(), pad, -1);
    rows_.push_back(std::move(cur));
    cur = Row{};
    segment = 0;
  };
  for (const auto& c : chats) {
    if (c.ids.size() < 2) continue;
    const size_t n = std::min(c.ids.size() - 1, size_t(seq_len_));  // positions it fills
    bool any_target = false;
    for (size_t t = 0; t < n; ++t) any_target = any_target || c.mask[t + 1];
    if (!any_target) continue;  // nothing to learn within the window
    if (!pack_ || cur.inputs.size() + n > size_t(seq_len_)) flush();
    for (size_t t = 0; t < n; ++t) {
      cur.inputs.push_back(c.ids[t]);
      cur.targets.push_back(c.mask[t + 1] ? c.ids[t + 1] : kIgnoreIndex);
      cur.segments.push_back(segment);
      target_tokens_ += c.mask[t + 1] ? 1 : 0;
    }
    ++segment;
    ++conversations_;
  }
  flush();
  if (rows_.empty()) throw std::runtime_error("SFT: no conversation with an assistant reply");
}

SftBatch SftBatches::rows(const std::vector<int64_t>& idx) const {
  const int64_t B = int64_t(idx.size()), T = seq_len_;
  SftBatch b;
  b.inputs = torch::empty({B, T}, torch::kLong);    // [B, T]
  b.targets = torch::empty({B, T}, torch::kLong);   // [B, T]
  b.segments = torch::empty({B, T}, torch::kLong);  // [B, T]
  for (int64_t r = 0; r < B; ++r) {
    const Row& row = rows_.at(size_t(idx[r]));
    std::copy(row.inputs.begin(), row.inputs.end(), b.inputs.data_ptr<int64_t>() + r * T);
    std::copy(row.targets.begin(), row.targets.end(), b.targets.data_ptr<int64_t>() + r * T);
    std::copy(row.segments.begin(), row.segments.end(), b.segments.data_ptr<int64_t>() + r * T);
  }
  if (!pack_ && B > 0) {
    int64_t longest = 1;
    for (int64_t i : idx) longest = std::max(longest, rows_.at(size_t(i)).used);
    b.inputs = b.inputs.narrow(1, 0, longest).contiguous();      // [B, L]
    b.targets = b.targets.narrow(1, 0, longest).contiguous();    // [B, L]
    b.segments = b.segments.narrow(1, 0, longest).contiguous();  // [B, L]
  }
  return b;
}

SftBatch SftBatches::train_batch(uint64_t seed, int64_t step, int micro_step, int batch_size,
                                 int accumulation_steps) const {
  const uint64_t index = uint64_t(step) * uint64_t(accumulation_steps) + uint64_t(micro_step);
  std::vector<int64_t> idx;
  for (int b = 0; b < batch_size; ++b) {
    const uint64_t key = mix64(mix64(seed ^ 0x73667442617463ULL) + index * 1000003ULL + b);
    idx.push_back(int64_t(key % uint64_t(rows_.size())));
  }
  return rows(idx);
}

SftBatch SftBatches::range(int64_t first, int64_t n) const {
  std::vector<int64_t> idx;
  for (int64_t r = first; r < std::min(first + n, num_rows()); ++r) idx.push_back(r);
  return rows(idx);
}

}  // namespace ktl
