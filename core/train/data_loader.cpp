#include "core/train/data_loader.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/tokenizer/tokenizer.h"

namespace ktl {

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

void VectorTokenSource::read(int64_t offset, int64_t n, int64_t* dst) const {
  if (offset < 0 || n < 0 || offset + n > size())
    throw std::out_of_range("token read out of range");
  std::memcpy(dst, tokens_.data() + offset, sizeof(int64_t) * n);
}

TrainBatchSampler::TrainBatchSampler(std::shared_ptr<const TokenSource> src, int batch_size,
                                     int seq_len, uint64_t seed, int accumulation_steps,
                                     int overfit_batches, int rank, int world)
    : src_(std::move(src)),
      batch_size_(batch_size),
      seq_len_(seq_len),
      accum_(accumulation_steps),
      overfit_(overfit_batches),
      rank_(rank),
      world_(world),
      seed_(seed) {
  if (world_ < 1 || rank_ < 0 || rank_ >= world_)
    throw std::invalid_argument("sampler: rank " + std::to_string(rank_) + " outside world " +
                                std::to_string(world_));
  if (batch_size_ % world_ != 0)
    throw std::invalid_argument("batch_size " + std::to_string(batch_size_) +
                                " is not divisible by the " + std::to_string(world_) +
                                " data-parallel ranks (each rank takes batch_size / ranks rows)");
  if (src_->size() < seq_len_ + 1)
    throw std::runtime_error(
        "training data has " + std::to_string(src_->size()) +
        " tokens, fewer than max_seq_length + 1 = " + std::to_string(seq_len_ + 1));
}

torch::Tensor TrainBatchSampler::batch(int64_t step, int micro_step) const {
  // A global micro-batch index: the same data whatever the process history.
  uint64_t index = uint64_t(step) * uint64_t(accum_) + uint64_t(micro_step);
  if (overfit_ > 0) index %= uint64_t(overfit_);
  const int64_t span = src_->size() - (seq_len_ + 1) + 1;  // valid start offsets
  const int rows = batch_size_ / world_, first = rank_ * rows;
  auto out = torch::empty({rows, seq_len_ + 1}, torch::kLong);  // [B/W, T+1]
  int64_t* p = out.data_ptr<int64_t>();
  for (int b = first; b < first + rows; ++b) {
    const uint64_t key = mix64(mix64(seed_ ^ 0x6B746C5F74726169ULL) + index * 1000003ULL + b);
    const int64_t start = int64_t(key % uint64_t(span));
    src_->read(start, seq_len_ + 1, p + int64_t(b - first) * (seq_len_ + 1));
  }
  return out;
}

EvalBatches::EvalBatches(std::shared_ptr<const TokenSource> src, int batch_size, int seq_len,
                         int max_batches)
    : src_(std::move(src)), seq_len_(seq_len) {
  const int64_t n = src_->size();
  if (n < seq_len + 1)
    throw std::runtime_error(
        "evaluation data has " + std::to_string(n) +
        " tokens, fewer than max_seq_length + 1 = " + std::to_string(seq_len + 1));
  std::vector<int64_t> cur;
  for (int64_t start = 0; start + seq_len + 1 <= n; start += seq_len) {
    cur.push_back(start);
    if (int(cur.size()) == batch_size) {
      batches_.push_back(std::move(cur));
      cur.clear();
      if (int(batches_.size()) == max_batches) break;
    }
  }
  if (!cur.empty() && int(batches_.size()) < max_batches) batches_.push_back(std::move(cur));
}

torch::Tensor EvalBatches::batch(int64_t i) const {
  const auto& starts = batches_.at(size_t(i));
  auto out = torch::empty({int64_t(starts.size()), seq_len_ + 1}, torch::kLong);  // [b, T+1]
  int64_t* p = out.data_ptr<int64_t>();
  for (size_t r = 0; r < starts.size(); ++r)
    src_->read(starts[r], seq_len_ + 1, p + r * (seq_len_ + 1));
  return out;
}

int64_t EvalBatches::num_target_tokens() const {
  int64_t rows = 0;
  for (const auto& b : batches_) rows += int64_t(b.size());
  return rows * seq_len_;
}

int64_t EvalBatches::count_target_chars(const Tokenizer& tok) const {
  int64_t chars = 0;
  std::vector<int64_t> w(size_t(seq_len_) + 1);
  for (const auto& starts : batches_) {
    for (int64_t s : starts) {
      src_->read(s, seq_len_ + 1, w.data());
      for (int t = 1; t <= seq_len_; ++t) {
        const std::string bytes = tok.token_bytes(int(w[t]));
        size_t from = 0;
        // SentencePiece's dummy prefix: a space that is not in the original text.
        const bool doc_start = w[t - 1] == tok.eos_id() || w[t - 1] == tok.bos_id();
        if (doc_start && !bytes.empty() && bytes[0] == ' ') from = 1;
        for (size_t i = from; i < bytes.size(); ++i)
          if ((static_cast<unsigned char>(bytes[i]) & 0xC0) != 0x80) ++chars;
      }
    }
  }
  return chars;
}

}  // namespace ktl
