#include "core/train/distill_loss.h"

#include <torch/torch.h>

#include <algorithm>

#include "core/model/no_autocast.h"

namespace ktl {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

int64_t chunk_for(int64_t rows, int64_t vocab) {
  return rows > 0 ? rows : std::max<int64_t>(16, (int64_t(1) << 22) / vocab);
}

// Inputs a mode does not use are empty tensors (numel 0): autograd functions take no undefined
// ones. Whole vocabulary: th [N, Dt], tw [V, Dt]. Top-k: ids [N, k], logp [N, k].
struct ChunkedDistill : public torch::autograd::Function<ChunkedDistill> {
  static variable_list forward(AutogradContext* ctx, Tensor h, Tensor weight, Tensor targets,
                               Tensor th, Tensor tw, Tensor ids, Tensor logp, double alpha,
                               double T, int64_t chunk, int64_t dtype) {
    NoAutocast no_autocast;
    const auto cd = static_cast<torch::ScalarType>(dtype);
    const bool top_k = ids.numel() > 0;
    const int64_t N = h.size(0);
    const auto f32 = h.options().dtype(torch::kFloat32);
    auto wc = weight.to(cd);                                              // [V, D]
    auto twc = top_k ? Tensor() : tw.to(cd);                              // [V, Dt]
    auto kl = torch::empty({N}, f32), ce = torch::empty({N}, f32);        // [N]
    auto lse = torch::empty({N}, f32);                                    // student at T = 1
    auto lse_s = torch::empty({N}, f32), lse_t = torch::empty({N}, f32);  // both at T
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      auto zs = torch::mm(h.narrow(0, s, n).to(cd), wc.t()).to(torch::kFloat32);  // [n, V]
      auto l1 = torch::logsumexp(zs, 1);                                          // [n]
      lse.narrow(0, s, n).copy_(l1);
      ce.narrow(0, s, n).copy_(l1 - zs.gather(1, targets.narrow(0, s, n).unsqueeze(1)).squeeze(1));
      Tensor lp, lq;  // teacher and student log-probabilities at T: [n, k] or [n, V]
      if (top_k) {
        lp = logp.narrow(0, s, n);
        lq = torch::log_softmax(zs.gather(1, ids.narrow(0, s, n)).div_(T), 1);
      } else {
        auto zt = torch::mm(th.narrow(0, s, n).to(cd), twc.t()).to(torch::kFloat32);  // [n, V]
        auto ls = zs.div_(T), lt = zt.div_(T);
        auto a = torch::logsumexp(ls, 1), b = torch::logsumexp(lt, 1);  // [n]
        lse_s.narrow(0, s, n).copy_(a);
        lse_t.narrow(0, s, n).copy_(b);
        lq = ls.sub_(a.unsqueeze(1));
        lp = lt.sub_(b.unsqueeze(1));
      }
      kl.narrow(0, s, n).copy_((lp.exp() * (lp - lq)).sum(1));
    }
    auto loss = kl * (alpha * T * T) + ce * (1.0 - alpha);  // [N]
    ctx->save_for_backward({h, weight, targets, th, tw, ids, logp, lse, lse_s, lse_t});
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["T"] = T;
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["dtype"] = dtype;
    ctx->mark_non_differentiable({kl, ce});
    return {loss, kl, ce};
  }

  // d loss / d z_s = alpha T (q_T - p_T) + (1 - alpha) (softmax(z_s) - onehot(target)); top-k:
  // the KL part only on the k ids, q and p renormalised over them.
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    NoAutocast no_autocast;
    auto sv = ctx->get_saved_variables();
    const auto &h = sv[0], &weight = sv[1], &targets = sv[2], &th = sv[3], &tw = sv[4],
               &ids = sv[5], &logp = sv[6], &lse = sv[7], &lse_s = sv[8], &lse_t = sv[9];
    const double alpha = ctx->saved_data["alpha"].toDouble(), T = ctx->saved_data["T"].toDouble();
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const auto cd = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    const bool top_k = ids.numel() > 0, want_h = ctx->needs_input_grad(0),
               want_w = ctx->needs_input_grad(1);
    const int64_t N = h.size(0);
    auto g = grad_out[0].to(torch::kFloat32);  // [N]
    auto wc = weight.to(cd);                   // [V, D]
    auto twc = top_k || alpha == 0 ? Tensor() : tw.to(cd);
    Tensor grad_h = want_h ? torch::empty_like(h) : Tensor();
    Tensor grad_w =
        want_w ? torch::zeros(weight.sizes(), weight.options().dtype(torch::kFloat32)) : Tensor();
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      auto hc = h.narrow(0, s, n).to(cd);                   // [n, D]
      auto zs = torch::mm(hc, wc.t()).to(torch::kFloat32);  // [n, V]
      Tensor kl_grad;  // alpha T (q - p): [n, k] (top-k) or [n, V]
      if (alpha > 0 && top_k) {
        auto q = torch::softmax(zs.gather(1, ids.narrow(0, s, n)).div_(T), 1);  // [n, k]
        kl_grad = (q - logp.narrow(0, s, n).exp()).mul_(alpha * T);
      } else if (alpha > 0) {
        auto zt = torch::mm(th.narrow(0, s, n).to(cd), twc.t()).to(torch::kFloat32);  // [n, V]
        auto q = (zs / T).sub_(lse_s.narrow(0, s, n).unsqueeze(1)).exp_();
        auto p = zt.div_(T).sub_(lse_t.narrow(0, s, n).unsqueeze(1)).exp_();
        kl_grad = q.sub_(p).mul_(alpha * T);
      }
      auto tgt = targets.narrow(0, s, n).unsqueeze(1);                              // [n, 1]
      auto d = zs.sub_(lse.narrow(0, s, n).unsqueeze(1)).exp_().mul_(1.0 - alpha);  // [n, V]
      d.scatter_add_(1, tgt, torch::full({n, 1}, -(1.0 - alpha), d.options()));
      if (kl_grad.defined() && top_k) d.scatter_add_(1, ids.narrow(0, s, n), kl_grad);
      if (kl_grad.defined() && !top_k) d.add_(kl_grad);
      auto dl = d.mul_(g.narrow(0, s, n).unsqueeze(1)).to(cd);
      if (want_h) grad_h.narrow(0, s, n).copy_(torch::mm(dl, wc));         // [n, D]
      if (want_w) grad_w.add_(torch::mm(dl.t(), hc).to(torch::kFloat32));  // [V, D]
    }
    if (want_w) grad_w = grad_w.to(weight.scalar_type());
    variable_list out(11);  // one per forward input; only h and weight get one
    out[0] = grad_h;
    out[1] = grad_w;
    return out;
  }
};

Tensor none_like(const Tensor& t, torch::ScalarType dtype) {
  return torch::empty({0}, t.options().dtype(dtype));
}

}  // namespace

DistillLoss distill_loss(const Tensor& h, const Tensor& weight, const Tensor& targets,
                         const DistillTargets& teacher, const DistillLossOptions& o) {
  TORCH_CHECK(h.dim() == 2 && weight.dim() == 2 && h.size(1) == weight.size(1),
              "distill_loss: h [N, D] and weight [V, D] expected");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == h.size(0),
              "distill_loss: targets [N] expected");
  TORCH_CHECK(o.temperature > 0, "distill_loss: temperature must be positive");
  TORCH_CHECK(o.alpha >= 0 && o.alpha <= 1, "distill_loss: alpha must be in [0, 1]");
  const int64_t N = h.size(0), V = weight.size(0);
  Tensor th, tw, ids, logp;
  if (teacher.is_top_k()) {
    TORCH_CHECK(teacher.topk_ids.dim() == 2 && teacher.topk_ids.size(0) == N &&
                    teacher.topk_logp.sizes() == teacher.topk_ids.sizes(),
                "distill_loss: top-k ids and log-probabilities [N, k] expected");
    TORCH_CHECK(teacher.topk_ids.max().item<int64_t>() < V,
                "distill_loss: a teacher token id is beyond the student's vocabulary");
    ids = teacher.topk_ids.to(torch::kLong);
    logp = teacher.topk_logp.to(torch::kFloat32);
    th = none_like(h, h.scalar_type());
    tw = none_like(h, h.scalar_type());
  } else {
    TORCH_CHECK(teacher.teacher_h.dim() == 2 && teacher.teacher_h.size(0) == N &&
                    teacher.teacher_weight.dim() == 2 &&
                    teacher.teacher_weight.size(1) == teacher.teacher_h.size(1),
                "distill_loss: teacher h [N, Dt] and weight [V, Dt] expected");
    TORCH_CHECK(teacher.teacher_weight.size(0) == V, "distill_loss: the teacher's vocabulary (",
                teacher.teacher_weight.size(0), ") differs from the student's (", V, ")");
    th = teacher.teacher_h.detach();
    tw = teacher.teacher_weight.detach();
    ids = none_like(h, torch::kLong);
    logp = none_like(h, torch::kFloat32);
  }
  const auto dtype = static_cast<int64_t>(autocast_dtype(h.device(), torch::kFloat32));
  auto out = ChunkedDistill::apply(h, weight, targets.to(torch::kLong), th, tw, ids, logp, o.alpha,
                                   o.temperature, chunk_for(o.chunk_rows, V), dtype);
  return {out[0], out[1], out[2]};
}

DistillTargets teacher_top_k(const Tensor& teacher_h, const Tensor& teacher_weight, int64_t k,
                             double temperature, int64_t chunk_rows) {
  TORCH_CHECK(teacher_h.dim() == 2 && teacher_weight.dim() == 2 &&
                  teacher_h.size(1) == teacher_weight.size(1),
              "teacher_top_k: h [N, Dt] and weight [V, Dt] expected");
  TORCH_CHECK(k > 0 && temperature > 0, "teacher_top_k: k and temperature must be positive");
  const auto cd = autocast_dtype(teacher_h.device(), torch::kFloat32);
  torch::NoGradGuard no_grad;
  NoAutocast no_autocast;
  const int64_t N = teacher_h.size(0), V = teacher_weight.size(0);
  k = std::min(k, V);
  const int64_t chunk = chunk_for(chunk_rows, V);
  auto twc = teacher_weight.to(cd);  // [V, Dt]
  DistillTargets t;
  t.topk_ids = torch::empty({N, k}, teacher_h.options().dtype(torch::kLong));      // [N, k]
  t.topk_logp = torch::empty({N, k}, teacher_h.options().dtype(torch::kFloat32));  // [N, k]
  for (int64_t s = 0; s < N; s += chunk) {
    const int64_t n = std::min(chunk, N - s);
    auto zt = torch::mm(teacher_h.narrow(0, s, n).to(cd), twc.t()).to(torch::kFloat32);  // [n, V]
    auto [values, ids] = zt.topk(k, 1, /*largest=*/true, /*sorted=*/false);              // [n, k]
    t.topk_ids.narrow(0, s, n).copy_(ids);
    t.topk_logp.narrow(0, s, n).copy_(torch::log_softmax(values.div_(temperature), 1));
  }
  return t;
}

}  // namespace ktl
