// The output head and the log-probabilities of the targets, a chunk of rows at a time, so the
// [N, V] logits never exist whole: forward keeps each row's log-sum-exp, backward recomputes one
// chunk's logits at a time. With vocab 32000 and 8 x 256 tokens one fp32 copy of the logits is
// 262 MB, and the whole-logits path keeps several (bf16 and fp32 logits, the log-softmax, the
// gradient); this holds one chunk (16 MB of fp32 logits). Values and gradients are those of
// log_softmax(h W^T).gather(targets) computed in the same dtype (bf16 under autocast, as the plain
// head gets from autocast). Thread-safety: as any autograd op (tensors owned by the calling
// thread).
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace ktl {

// h [N, D] (after the final norm), weight [V, D], targets [N] int64 -> log p(target) [N] float32.
// Rows whose target is `ignore_index` give 0 and no gradient. `chunk_rows` 0 picks ~4M logits a
// chunk. Differentiable in h and weight (the weight's gradient only when it requires one).
// Under CPU/CUDA autocast the products run in autocast's dtype, as autocast would run them.
torch::Tensor chunked_target_logprobs(const torch::Tensor& h, const torch::Tensor& weight,
                                      const torch::Tensor& targets, int64_t ignore_index = -100,
                                      int64_t chunk_rows = 0);

}  // namespace ktl
