// How well a draft model predicts its teacher, on held-out batches: what speculative decoding
// gets from it (docs/speculative-decoding.md). Per target position, with p the teacher's and q
// the draft's next-token distribution at temperature 1:
//   top-1 agreement   argmax q == argmax p: the chance that greedy speculation keeps the token
//   acceptance        sum_v min(p(v), q(v)) = 1 - TV(p, q): the chance that speculative
//                     sampling (Leviathan et al. 2023) keeps a token drawn from q
//   KL(p || q)        what `ktl distill` minimises (on the whole vocabulary here)
// A draft proposing k tokens keeps the first one with these odds, the later ones given the same
// prefix as the teacher's. Thread-safety: as the models' forward.
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "core/model/model.h"
#include "core/train/mixed_precision.h"

namespace ktl {

class EvalBatches;

struct DraftAgreement {
  double top1 = 0;        // share of positions where the argmaxes agree
  double acceptance = 0;  // mean of 1 - TV(p, q)
  double kl = 0;          // mean KL(p || q), nats
  int64_t tokens = 0;     // positions compared
};

// Sums over rows of draft and teacher logits [N, V] (any float dtype): fills top1, acceptance
// and kl as sums (not means) and tokens = N.
DraftAgreement agreement_sums(const torch::Tensor& draft_logits,
                              const torch::Tensor& teacher_logits);

// Means over every target position of `batches`; both models on `device`, same vocabulary
// (std::invalid_argument otherwise). The trunks run under `precision`'s autocast, the heads a
// chunk of rows at a time in fp32. Eval mode for the call; no gradients.
DraftAgreement evaluate_draft_agreement(TransformerImpl& draft, TransformerImpl& teacher,
                                        const EvalBatches& batches, Precision precision,
                                        const torch::Device& device);

}  // namespace ktl
