#include "core/model/lora_down.h"

#include <torch/torch.h>

#include "core/model/no_autocast.h"

namespace ktl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct LoraDown : public torch::autograd::Function<LoraDown> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor a,
                               torch::Tensor keep, double p, int64_t dtype) {
    NoAutocast no_autocast;
    const auto cd = static_cast<torch::ScalarType>(dtype);
    auto xd = (x.to(cd) * keep).mul_(1.0 / (1.0 - p));  // [..., in]
    ctx->save_for_backward({x, a, keep});
    ctx->saved_data["p"] = p;
    ctx->saved_data["dtype"] = dtype;
    return {torch::matmul(xd, a.to(cd).t())};  // [..., r]
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    NoAutocast no_autocast;
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &a = saved[1], &keep = saved[2];
    const double s = 1.0 / (1.0 - ctx->saved_data["p"].toDouble());
    const auto cd = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    const int64_t in = x.size(-1), r = a.size(0);
    auto g = grad_out[0].to(cd);  // [..., r]
    torch::Tensor gx, ga;
    if (ctx->needs_input_grad(0))
      gx = (torch::matmul(g, a.to(cd)) * keep).mul_(s).to(x.scalar_type());  // [..., in]
    if (ctx->needs_input_grad(1)) {
      auto xd = (x.to(cd) * keep).mul_(s).reshape({-1, in});           // [N, in]
      ga = torch::mm(g.reshape({-1, r}).t(), xd).to(a.scalar_type());  // [r, in]
    }
    // One gradient per forward input: x, a, keep, p, dtype.
    return {gx, ga, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor lora_down_masked(const torch::Tensor& x, const torch::Tensor& a,
                               const torch::Tensor& keep, double p) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "LoRA dropout must be in [0, 1)");
  TORCH_CHECK(keep.sizes() == x.sizes() && keep.scalar_type() == torch::kBool,
              "keep must be a bool tensor of x's shape");
  return LoraDown::apply(x, a, keep, p,
                         static_cast<int64_t>(autocast_dtype(x.device(), x.scalar_type())))[0];
}

torch::Tensor lora_down_dropout(const torch::Tensor& x, const torch::Tensor& a, double p) {
  torch::Tensor keep;
  {
    torch::NoGradGuard no_grad;
    keep = torch::empty(x.sizes(), x.options().dtype(torch::kFloat32))
               .bernoulli_(1.0 - p)
               .to(torch::kBool);  // [..., in]
  }
  return lora_down_masked(x, a, keep, p);
}

}  // namespace ktl
