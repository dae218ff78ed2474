#include "core/train/checkpointed_forward.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <cstdint>

namespace ktl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Runs block `index` of `model` on h; the block's parameters are not autograd inputs of this
// node: the recompute in backward accumulates their gradients directly (re-entrant backward,
// as PyTorch's torch.utils.checkpoint with use_reentrant=True).
struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor h, torch::Tensor cos,
                               torch::Tensor sin, TransformerImpl* model, int64_t index) {
    ctx->saved_data["model"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(model));
    ctx->saved_data["index"] = index;
    ctx->saved_data["cpu_autocast"] = at::autocast::is_cpu_enabled();
    ctx->saved_data["cpu_dtype"] = static_cast<int64_t>(at::autocast::get_autocast_cpu_dtype());
    ctx->saved_data["gpu_autocast"] = at::autocast::is_enabled();
    ctx->saved_data["gpu_dtype"] = static_cast<int64_t>(at::autocast::get_autocast_gpu_dtype());
    ctx->save_for_backward({h, cos, sin});
    // Function::apply already runs forward with grad mode off: no graph is kept.
    return {model->block(size_t(index))->forward(h, cos, sin)};  // [B, T, D]
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto* model =
        reinterpret_cast<TransformerImpl*>(static_cast<intptr_t>(ctx->saved_data["model"].toInt()));
    const int64_t index = ctx->saved_data["index"].toInt();
    // Same autocast state as the forward, so the recompute matches it exactly.
    const bool prev_cpu = at::autocast::is_cpu_enabled(), prev_gpu = at::autocast::is_enabled();
    const auto prev_cpu_dtype = at::autocast::get_autocast_cpu_dtype();
    const auto prev_gpu_dtype = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_cpu_enabled(ctx->saved_data["cpu_autocast"].toBool());
    at::autocast::set_autocast_cpu_dtype(
        static_cast<at::ScalarType>(ctx->saved_data["cpu_dtype"].toInt()));
    at::autocast::set_enabled(ctx->saved_data["gpu_autocast"].toBool());
    at::autocast::set_autocast_gpu_dtype(
        static_cast<at::ScalarType>(ctx->saved_data["gpu_dtype"].toInt()));
    torch::Tensor grad_h;
    {
      torch::AutoGradMode enable(true);
      auto h = saved[0].detach().requires_grad_(true);  // [B, T, D]
      auto out = model->block(size_t(index))->forward(h, saved[1], saved[2]);
      torch::autograd::backward({out}, {grad_out[0]});
      grad_h = h.grad();
    }
    // Weight casts cached during the recompute must not outlive this step's weights.
    if (at::autocast::is_cpu_enabled() || at::autocast::is_enabled()) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(prev_cpu);
    at::autocast::set_autocast_cpu_dtype(prev_cpu_dtype);
    at::autocast::set_enabled(prev_gpu);
    at::autocast::set_autocast_gpu_dtype(prev_gpu_dtype);
    // One gradient per forward input: h, cos, sin, model, index.
    return {grad_h, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor training_forward(TransformerImpl& model, const torch::Tensor& tokens,
                               bool checkpoint_blocks) {
  if (!checkpoint_blocks || !torch::GradMode::is_enabled()) return model.forward(tokens);
  TORCH_CHECK(tokens.dim() == 2, "tokens must be [B, T]");
  const auto T = tokens.size(1);
  TORCH_CHECK(T <= model.config().max_seq_length, "sequence length ", T, " exceeds max_seq_length ",
              model.config().max_seq_length);
  auto [cos, sin] = model.rope(T, tokens.device());  // [T, Dh] each
  auto h = model.embed(tokens);                      // [B, T, D]
  for (size_t i = 0; i < model.num_blocks(); ++i)
    h = CheckpointedBlock::apply(h, cos, sin, &model, static_cast<int64_t>(i))[0];
  return model.head(h);  // [B, T, V]
}

}  // namespace ktl
