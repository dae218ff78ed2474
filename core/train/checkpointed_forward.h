// The training forward pass, optionally with gradient checkpointing per transformer block:
// each block's forward runs without saving activations, and its backward recomputes the block
// (with autograd on) from the saved block input. Activation memory drops from
// O(layers x per-block activations) to O(layers x block input + one block's activations),
// for about one extra forward pass of compute. Gradients are the same (the recompute is
// deterministic: no dropout). Autocast state at forward time is restored for the recompute.
// Thread-safety: as the model's forward (one thread per model instance).
#pragma once

#include <torch/types.h>

#include "core/model/model.h"

namespace ktl {

// tokens [B, T] int64 -> logits [B, T, V]. checkpoint_blocks=false is model.forward().
torch::Tensor training_forward(TransformerImpl& model, const torch::Tensor& tokens,
                               bool checkpoint_blocks);

}  // namespace ktl
