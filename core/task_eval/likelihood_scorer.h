// Log-likelihood of continuations under a Transformer: the LibTorch half of task evaluation
// (mc_task.h holds the tasks and the scoring rule).
//
// A scored sequence is [BOS] + encode(context) + encode(choice), every piece encoded on its own
// (SentencePiece gives " 긍정" its word-start piece as in running text), left-truncated to the
// model's context; the last n_cont tokens are the continuation. The same ids sent to
// /v1/completions with echo and logprobs give the same sums (tested).
//
// Thread-safety: run from one thread per model (the model is not locked).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "core/model/model.h"
#include "core/task_eval/mc_task.h"

namespace ktl {

class Tokenizer;

struct ScoredSequence {
  std::vector<int> ids;
  int n_cont = 0;  // the continuation: the last n_cont ids
};

ScoredSequence mc_sequence(const Tokenizer& tok, const std::string& context,
                           const std::string& choice, int max_len);

// Summed log-probabilities of each sequence's continuation, in fp32, in batches of
// `batch_size` sequences (right-padded: causal attention keeps padding out of every sum).
std::vector<double> continuation_logliks(Transformer& model,
                                         const std::vector<ScoredSequence>& seqs, int batch_size,
                                         const torch::Device& device);

struct McEvalOptions {
  int shots = 0;         // solved examples before each context
  uint64_t seed = 1234;  // which ones
  int batch_size = 16;   // sequences per forward
};

// Scores every example of `task` (the model is put in eval mode and restored).
McScore evaluate_mc_task(Transformer& model, const Tokenizer& tok, const McTask& task,
                         const McEvalOptions& opts, const torch::Device& device);

}  // namespace ktl
