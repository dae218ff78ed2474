// Validation metrics and quick text samples for training (and `ktl eval`).
// Thread-safety: as the model's forward (one thread per model instance).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "core/train/mixed_precision.h"

namespace ktl {

class EvalBatches;
class Tokenizer;

struct EvalResult {
  double loss = 0;     // mean cross-entropy per target token (nats)
  double ppl = 0;      // exp(loss)
  double bpc = 0;      // total nats / characters / ln 2 (tokenizer-independent)
  int64_t tokens = 0;  // target tokens evaluated
  int64_t chars = 0;   // characters those tokens stand for
};

// Mean loss over every batch of `batches` (no grad, eval mode restored afterwards).
// chars <= 0 leaves bpc at 0.
EvalResult evaluate(TransformerImpl& model, const EvalBatches& batches, int64_t chars,
                    Precision precision, const torch::Device& device);

// Fixed Korean prompts for training samples.
const std::vector<std::string>& sample_prompts();

// Continues `prompt` by recomputing the full context each token (no KV cache: simple, fine for
// a few dozen tokens). temperature 0 = greedy; otherwise top-k sampling seeded by `seed`.
// The context starts with </s> (documents in the shards follow one). Returns the continuation.
std::string generate_continuation(TransformerImpl& model, const Tokenizer& tok,
                                  const std::string& prompt, int max_new_tokens, double temperature,
                                  int top_k, uint64_t seed, Precision precision,
                                  const torch::Device& device);

}  // namespace ktl
