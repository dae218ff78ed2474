// The distillation loss of a student against a teacher, per row:
//
//   alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * (-log p_s(target))
//
// (Hinton et al.: the T^2 keeps the KL's gradient on the scale of the cross-entropy's.) With
// top-k targets the KL runs over the teacher's k most likely tokens only, both distributions
// renormalised over those k (a gather of the student's logits): no softmax of the teacher over
// the vocabulary per step, and the student's mass outside the k is left to the cross-entropy.
//
// As core/train/chunked_lm_head.h, the output heads run a chunk of rows at a time: the [N, V]
// logits of student and teacher never exist whole (backward recomputes each chunk), so model_draft
// at 8 x 256 rows and a 32k vocabulary holds ~16 MB of fp32 logits per tensor instead of 262 MB.
// Under CPU/CUDA autocast the head products run in autocast's dtype; the softmaxes in fp32.
// Thread-safety: as any autograd op (tensors owned by the calling thread).
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace ktl {

// What the teacher says about N rows: its final hidden states and head (the whole vocabulary:
// its logits are recomputed a chunk at a time) or its top-k (teacher_top_k below).
struct DistillTargets {
  torch::Tensor teacher_h;       // [N, Dt] after the teacher's final norm (whole vocabulary)
  torch::Tensor teacher_weight;  // [V, Dt] the teacher's output head (whole vocabulary)
  torch::Tensor topk_ids;        // [N, k] int64 (top-k)
  torch::Tensor topk_logp;       // [N, k] float32: log softmax(z_t / T) over those k (top-k)
  bool is_top_k() const { return topk_ids.defined(); }
};

struct DistillLossOptions {
  double alpha = 0.5;        // weight of the KL term
  double temperature = 1.0;  // T
  int64_t chunk_rows = 0;    // rows per head chunk; 0 = ~4M logits a chunk
};

struct DistillLoss {
  torch::Tensor loss;  // [N] float32: the combined loss; differentiable in h and weight
  torch::Tensor kl;    // [N] float32: the KL term before alpha * T^2 (no gradient)
  torch::Tensor ce;    // [N] float32: -log p_s(target) (no gradient)
};

// h [N, D] (after the student's final norm), weight [V, D] (its head), targets [N] int64.
// Throws c10::Error when the shapes or the teacher's vocabulary disagree.
DistillLoss distill_loss(const torch::Tensor& h, const torch::Tensor& weight,
                         const torch::Tensor& targets, const DistillTargets& teacher,
                         const DistillLossOptions& options);

// The teacher's top-k targets for its rows: teacher_h [N, Dt], teacher_weight [V, Dt] -> ids and
// log-probabilities at temperature T renormalised over the k ids. No gradient.
DistillTargets teacher_top_k(const torch::Tensor& teacher_h, const torch::Tensor& teacher_weight,
                             int64_t k, double temperature, int64_t chunk_rows = 0);

}  // namespace ktl
