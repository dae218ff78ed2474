#include "core/model/projection.h"

#include <torch/nn/functional/linear.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "core/model/lora_down.h"
#include "core/model/no_autocast.h"

namespace ktl {

ProjectionImpl::ProjectionImpl(int64_t in, int64_t out) : in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({out, in}));
  // torch::nn::Linear's default init; the model's init_weights() overwrites it.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  torch::NoGradGuard no_grad;
  weight.uniform_(-bound, bound);
}

torch::Tensor ProjectionImpl::forward(const torch::Tensor& x) {
  // A frozen base stored in bf16 (LoRA training) is used as it is under autocast, which casts
  // x to match; outside autocast it is cast to x's dtype.
  const bool autocast = autocast_enabled(x.device());
  const auto& w =
      weight.scalar_type() == x.scalar_type() || autocast ? weight : weight.to(x.scalar_type());
  auto y = torch::nn::functional::linear(x, w);  // [..., out]
  // Scale 0: the adapter is switched off (DPO's reference pass), so skip its work and dropout.
  if (!lora_A.defined() || lora_scale == 0.0) return y;
  auto low = lora_dropout > 0.0 && is_training()
                 ? lora_down_dropout(x, lora_A, lora_dropout)          // [..., r]
                 : torch::nn::functional::linear(x, lora_A);           // [..., r]
  return y + torch::nn::functional::linear(low, lora_B) * lora_scale;  // [..., out]
}

void ProjectionImpl::attach_lora(int64_t rank, double scale, double dropout, uint64_t seed) {
  if (lora_A.defined()) throw std::logic_error("a LoRA adapter is already attached");
  if (rank <= 0) throw std::invalid_argument("LoRA rank must be positive");
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(weight.device());
  auto gen = at::detail::createCPUGenerator(seed);
  // kaiming_uniform_(a = sqrt(5)) as nn.Linear and PEFT use: bound = 1 / sqrt(fan_in).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  auto a = at::rand({rank, in_features}, gen, torch::TensorOptions().dtype(torch::kFloat32));
  lora_A = register_parameter("lora_A", (a * (2 * bound) - bound).to(opts));
  lora_B = register_parameter("lora_B", torch::zeros({out_features, rank}, opts));
  lora_scale = scale;
  lora_dropout = dropout;
}

void ProjectionImpl::merge_lora() {
  if (!lora_A.defined()) return;
  {
    torch::NoGradGuard no_grad;
    weight.add_(torch::matmul(lora_B.detach().to(torch::kFloat32),
                              lora_A.detach().to(torch::kFloat32))
                    .mul_(lora_scale)
                    .to(weight.scalar_type()));  // [out, in]
  }
  detach_lora();
}

void ProjectionImpl::detach_lora() {
  if (!lora_A.defined()) return;
  // LibTorch's Module has no unregister_parameter; parameters_ is its protected dict.
  parameters_.erase("lora_A");
  parameters_.erase("lora_B");
  lora_A = torch::Tensor();
  lora_B = torch::Tensor();
  lora_scale = 0.0;
  lora_dropout = 0.0;
}

}  // namespace ktl
