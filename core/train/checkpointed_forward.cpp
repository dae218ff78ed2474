#include "core/train/checkpointed_forward.h"

#include <ATen/autocast_mode.h>
#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <mutex>

#include "core/train/chunked_lm_head.h"

namespace ktl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor rng_state(at::Generator gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng_state(at::Generator gen, const at::Tensor& state) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// Autocast and random-number state of the forward, put back for the recompute in backward
// and restored to the caller's afterwards.
class RecomputeState {
 public:
  static void save(AutogradContext* ctx, const torch::Device& device) {
    ctx->saved_data["cpu_autocast"] = at::autocast::is_cpu_enabled();
    ctx->saved_data["cpu_dtype"] = static_cast<int64_t>(at::autocast::get_autocast_cpu_dtype());
    ctx->saved_data["gpu_autocast"] = at::autocast::is_enabled();
    ctx->saved_data["gpu_dtype"] = static_cast<int64_t>(at::autocast::get_autocast_gpu_dtype());
    ctx->saved_data["rng"] = rng_state(at::globalContext().defaultGenerator(device));
  }
  RecomputeState(AutogradContext* ctx, const torch::Device& device)
      : gen_(at::globalContext().defaultGenerator(device)),
        prev_cpu_(at::autocast::is_cpu_enabled()),
        prev_gpu_(at::autocast::is_enabled()),
        prev_cpu_dtype_(at::autocast::get_autocast_cpu_dtype()),
        prev_gpu_dtype_(at::autocast::get_autocast_gpu_dtype()),
        prev_rng_(rng_state(gen_)) {
    at::autocast::set_cpu_enabled(ctx->saved_data["cpu_autocast"].toBool());
    at::autocast::set_autocast_cpu_dtype(
        static_cast<at::ScalarType>(ctx->saved_data["cpu_dtype"].toInt()));
    at::autocast::set_enabled(ctx->saved_data["gpu_autocast"].toBool());
    at::autocast::set_autocast_gpu_dtype(
        static_cast<at::ScalarType>(ctx->saved_data["gpu_dtype"].toInt()));
    set_rng_state(gen_, ctx->saved_data["rng"].toTensor());
  }
  ~RecomputeState() {
    // Weight casts cached during the recompute must not outlive this step's weights.
    if (at::autocast::is_cpu_enabled() || at::autocast::is_enabled()) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(prev_cpu_);
    at::autocast::set_autocast_cpu_dtype(prev_cpu_dtype_);
    at::autocast::set_enabled(prev_gpu_);
    at::autocast::set_autocast_gpu_dtype(prev_gpu_dtype_);
    set_rng_state(gen_, prev_rng_);
  }
  RecomputeState(const RecomputeState&) = delete;
  RecomputeState& operator=(const RecomputeState&) = delete;

 private:
  at::Generator gen_;
  bool prev_cpu_, prev_gpu_;
  at::ScalarType prev_cpu_dtype_, prev_gpu_dtype_;
  at::Tensor prev_rng_;
};

torch::Tensor mask_or_none(const torch::Tensor& allowed) {
  return allowed.numel() > 0 ? allowed : torch::Tensor();
}

// Runs block `index` of `model` on h; the block's parameters are not autograd inputs of this
// node: the recompute in backward accumulates their gradients directly (re-entrant backward,
// as PyTorch's torch.utils.checkpoint with use_reentrant=True). `allowed` is empty (numel 0:
// autograd functions take no undefined tensors) for plain causal rows.
struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor h, torch::Tensor cos,
                               torch::Tensor sin, torch::Tensor allowed, TransformerImpl* model,
                               int64_t index) {
    ctx->saved_data["model"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(model));
    ctx->saved_data["index"] = index;
    RecomputeState::save(ctx, h.device());
    ctx->save_for_backward({h, cos, sin, allowed});
    // Function::apply already runs forward with grad mode off: no graph is kept.
    return {model->block(size_t(index))->forward(h, cos, sin, mask_or_none(allowed))};  // [B, T, D]
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto* model =
        reinterpret_cast<TransformerImpl*>(static_cast<intptr_t>(ctx->saved_data["model"].toInt()));
    const int64_t index = ctx->saved_data["index"].toInt();
    torch::Tensor grad_h;
    {
      RecomputeState state(ctx, saved[0].device());
      torch::AutoGradMode enable(true);
      auto h = saved[0].detach().requires_grad_(true);  // [B, T, D]
      auto out =
          model->block(size_t(index))->forward(h, saved[1], saved[2], mask_or_none(saved[3]));
      torch::autograd::backward({out}, {grad_out[0]});
      grad_h = h.grad();
    }
    // One gradient per forward input: h, cos, sin, allowed, model, index.
    return {grad_h,          torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor training_hidden(TransformerImpl& model, const torch::Tensor& tokens,
                              const torch::Tensor& segments, bool checkpoint_blocks) {
  const bool packed = segments.defined();
  if (!checkpoint_blocks || !torch::GradMode::is_enabled())
    return packed ? model.hidden_packed(tokens, segments) : model.hidden(tokens);
  TORCH_CHECK(tokens.dim() == 2, "tokens must be [B, T]");
  const auto T = tokens.size(1);
  TORCH_CHECK(T <= model.config().max_seq_length, "sequence length ", T, " exceeds max_seq_length ",
              model.config().max_seq_length);
  torch::Tensor cos, sin, allowed;  // [T, Dh] x2 (packed: [B, T, Dh] x2 and [B, T, T])
  if (packed) {
    TORCH_CHECK(segments.sizes() == tokens.sizes(), "tokens and segments must both be [B, T]");
    auto r = model.packed_rope(segments);
    cos = r.cos, sin = r.sin, allowed = r.allowed;
  } else {
    std::tie(cos, sin) = model.rope(T, tokens.device());
    allowed = torch::empty({0}, torch::TensorOptions().dtype(torch::kBool).device(tokens.device()));
  }
  auto h = model.embed(tokens);  // [B, T, D]
  // A frozen embedding (LoRA) gives an input that needs no gradient, and a checkpointed block
  // whose inputs need none would cut the graph: its parameters are not its inputs (as with
  // torch.utils.checkpoint's reentrant variant and Hugging Face's enable_input_require_grads).
  if (!h.requires_grad()) h = h.detach().requires_grad_(true);
  for (size_t i = 0; i < model.num_blocks(); ++i)
    h = CheckpointedBlock::apply(h, cos, sin, allowed, &model, static_cast<int64_t>(i))[0];
  return h;  // [B, T, D]
}

torch::Tensor target_logprobs(TransformerImpl& model, const torch::Tensor& hidden,
                              const torch::Tensor& targets, int64_t ignore_index) {
  const auto B = hidden.size(0), T = hidden.size(1), D = hidden.size(2);
  auto hn = model.norm(hidden).reshape({B * T, D});  // [B*T, D]
  return chunked_target_logprobs(hn, model.output_weight(), targets.reshape({-1}), ignore_index)
      .view({B, T});  // [B, T]
}

}  // namespace ktl
