#include "core/train/chunked_lm_head.h"

#include <torch/torch.h>

#include <algorithm>

#include "core/model/no_autocast.h"

namespace ktl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct ChunkedLmHead : public torch::autograd::Function<ChunkedLmHead> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor h, torch::Tensor weight,
                               torch::Tensor targets, int64_t ignore_index, int64_t chunk,
                               int64_t dtype) {
    NoAutocast no_autocast;
    const auto cd = static_cast<torch::ScalarType>(dtype);
    const int64_t N = h.size(0);
    auto wc = weight.to(cd);                                           // [V, D]
    auto keep = targets != ignore_index;                               // [N]
    auto safe = targets.masked_fill(~keep, 0);                         // [N]
    auto out = torch::empty({N}, h.options().dtype(torch::kFloat32));  // [N]
    auto lse = torch::empty({N}, h.options().dtype(torch::kFloat32));  // [N]
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      auto logits = torch::mm(h.narrow(0, s, n).to(cd), wc.t()).to(torch::kFloat32);  // [n, V]
      auto l = torch::logsumexp(logits, 1);                                           // [n]
      lse.narrow(0, s, n).copy_(l);
      out.narrow(0, s, n).copy_(logits.gather(1, safe.narrow(0, s, n).unsqueeze(1)).squeeze(1) - l);
    }
    out.masked_fill_(~keep, 0.0);
    ctx->save_for_backward({h, weight, safe, keep, lse});
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["dtype"] = dtype;
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    NoAutocast no_autocast;
    auto saved = ctx->get_saved_variables();
    const auto &h = saved[0], &weight = saved[1], &safe = saved[2], &keep = saved[3],
               &lse = saved[4];
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const auto cd = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    const bool want_h = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    const int64_t N = h.size(0);
    auto g = grad_out[0].to(torch::kFloat32) * keep.to(torch::kFloat32);  // [N]
    auto wc = weight.to(cd);                                              // [V, D]
    torch::Tensor grad_h = want_h ? torch::empty_like(h) : torch::Tensor();
    torch::Tensor grad_w =
        want_w ? torch::zeros(weight.sizes(), weight.options().dtype(torch::kFloat32))
               : torch::Tensor();
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      auto hc = h.narrow(0, s, n).to(cd);                       // [n, D]
      auto logits = torch::mm(hc, wc.t()).to(torch::kFloat32);  // [n, V]
      auto gc = g.narrow(0, s, n).unsqueeze(1);                 // [n, 1]
      // d log p(t) / d logits = onehot(t) - softmax(logits)
      auto dlogits = (logits.sub_(lse.narrow(0, s, n).unsqueeze(1))).exp_().mul_(-gc);  // [n, V]
      dlogits.scatter_add_(1, safe.narrow(0, s, n).unsqueeze(1), gc);
      auto dl = dlogits.to(cd);
      if (want_h) grad_h.narrow(0, s, n).copy_(torch::mm(dl, wc));         // [n, D]
      if (want_w) grad_w.add_(torch::mm(dl.t(), hc).to(torch::kFloat32));  // [V, D]
    }
    if (want_w) grad_w = grad_w.to(weight.scalar_type());
    // One gradient per forward input: h, weight, targets, ignore_index, chunk, dtype.
    return {grad_h, grad_w, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor chunked_target_logprobs(const torch::Tensor& h, const torch::Tensor& weight,
                                      const torch::Tensor& targets, int64_t ignore_index,
                                      int64_t chunk_rows) {
  TORCH_CHECK(h.dim() == 2 && weight.dim() == 2 && h.size(1) == weight.size(1),
              "chunked_target_logprobs: h [N, D] and weight [V, D] expected");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == h.size(0),
              "chunked_target_logprobs: targets [N] expected");
  const int64_t V = weight.size(0);
  const int64_t chunk = chunk_rows > 0 ? chunk_rows : std::max<int64_t>(16, (int64_t(1) << 22) / V);
  const auto dtype = static_cast<int64_t>(autocast_dtype(h.device(), torch::kFloat32));
  return ChunkedLmHead::apply(h, weight, targets.to(torch::kLong), ignore_index, chunk, dtype)[0];
}

}  // namespace ktl
