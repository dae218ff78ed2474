// The training forward pass, optionally with gradient checkpointing per transformer block:
// each block's forward runs without saving activations, and its backward recomputes the block
// (with autograd on) from the saved block input. Activation memory drops from
// O(layers x per-block activations) to O(layers x block input + one block's activations),
// for about one extra forward pass of compute. Gradients are the same: the recompute runs with
// the forward's autocast state and random-number state (LoRA dropout draws the same masks).
// Packed SFT rows (segments) checkpoint too. The loss helpers apply the head a chunk of rows at
// a time (core/train/chunked_lm_head.h), so no [B, T, V] logits are kept for backward.
// Thread-safety: as the model's forward (one thread per model instance).
#pragma once

#include <torch/types.h>

#include "core/model/model.h"

namespace ktl {

// tokens [B, T] int64 (and, for packed rows, segments [B, T] int64; undefined otherwise) ->
// the last hidden states [B, T, D] before the final norm.
torch::Tensor training_hidden(TransformerImpl& model, const torch::Tensor& tokens,
                              const torch::Tensor& segments, bool checkpoint_blocks);

// hidden [B, T, D] (from training_hidden), targets [B, T] int64 -> log p(target) [B, T] float32
// through the final norm and the output head; 0 where the target is `ignore_index`.
torch::Tensor target_logprobs(TransformerImpl& model, const torch::Tensor& hidden,
                              const torch::Tensor& targets, int64_t ignore_index = -100);

}  // namespace ktl
