// Batches of token windows for training and evaluation, read straight from a memory-mapped
// token shard (the corpus is never loaded into RAM).
//
// Training: random windows of T+1 tokens. The window for (step, micro_step, row) is a pure
// function of the seed, so a resumed run sees exactly the batches it would have seen.
// Evaluation: consecutive windows with stride T over the start of the split (a fixed subset),
// so every evaluated target token is predicted once.
// Thread-safety: both samplers are immutable after construction; batch() is const and safe
// from any thread while the token source lives.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ktl {

class Tokenizer;

// Random-access read of a token sequence (a mapped shard or, in tests, a vector).
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual int64_t size() const = 0;
  // Copies tokens [offset, offset + n) into dst.
  virtual void read(int64_t offset, int64_t n, int64_t* dst) const = 0;
};

// In-memory source (tests, small fixtures).
class VectorTokenSource : public TokenSource {
 public:
  explicit VectorTokenSource(std::vector<int64_t> tokens) : tokens_(std::move(tokens)) {}
  int64_t size() const override { return static_cast<int64_t>(tokens_.size()); }
  void read(int64_t offset, int64_t n, int64_t* dst) const override;

 private:
  std::vector<int64_t> tokens_;
};

// Opens DATA_DIR/<split>.bin through core/data/token_shard.h (memory-mapped).
std::shared_ptr<TokenSource> open_token_shard(const std::string& path);

class TrainBatchSampler {
 public:
  // overfit_batches > 0 cycles over that many fixed batches instead of fresh random ones.
  // Data parallel: rank r of `world` reads only rows [r*B/W, (r+1)*B/W) of each global batch,
  // so W ranks together see exactly the batches one process would (B % W must be 0).
  TrainBatchSampler(std::shared_ptr<const TokenSource> src, int batch_size, int seq_len,
                    uint64_t seed, int accumulation_steps, int overfit_batches = 0, int rank = 0,
                    int world = 1);
  // [B/W, T+1] int64 on CPU: inputs are [:, :T], targets [:, 1:].
  torch::Tensor batch(int64_t step, int micro_step) const;

 private:
  std::shared_ptr<const TokenSource> src_;
  int batch_size_, seq_len_, accum_, overfit_, rank_, world_;
  uint64_t seed_;
};

class EvalBatches {
 public:
  // Up to max_batches batches of batch_size windows (stride seq_len) from the start of src.
  EvalBatches(std::shared_ptr<const TokenSource> src, int batch_size, int seq_len, int max_batches);
  int64_t num_batches() const { return static_cast<int64_t>(batches_.size()); }
  // [b, T+1] int64 (the last batch may have fewer rows).
  torch::Tensor batch(int64_t i) const;
  // Characters of the text the target tokens stand for (UTF-8 code points; the dummy space
  // SentencePiece adds at each document start is not counted). For bits per character.
  int64_t count_target_chars(const Tokenizer& tok) const;
  int64_t num_target_tokens() const;

 private:
  std::shared_ptr<const TokenSource> src_;
  int seq_len_;
  std::vector<std::vector<int64_t>> batches_;  // window start offsets per batch
};

// splitmix64 of a combined key: the sampler's deterministic randomness.
uint64_t mix64(uint64_t x);

}  // namespace ktl
