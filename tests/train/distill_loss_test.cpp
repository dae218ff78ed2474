// The distillation loss (core/train/distill_loss.h) against the formula written out with plain
// tensor ops on small tensors: values, gradients in h and the head, top-k, the chunking and the
// edge cases alpha 0 (plain cross-entropy) and a student equal to its teacher (zero loss and
// gradient).
#include "core/train/distill_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/train/chunked_lm_head.h"

namespace ktl {
namespace {

struct Case {
  torch::Tensor h, w;     // student [N, D], [V, D]
  torch::Tensor th, tw;   // teacher [N, Dt], [V, Dt]
  torch::Tensor targets;  // [N]
};

Case make_case(int64_t N, int64_t V, int64_t D, int64_t Dt, uint64_t seed) {
  torch::manual_seed(seed);
  auto f = torch::TensorOptions().dtype(torch::kFloat64);
  Case c;
  c.h = torch::randn({N, D}, f);
  c.w = torch::randn({V, D}, f);
  c.th = torch::randn({N, Dt}, f) * 2;
  c.tw = torch::randn({V, Dt}, f);
  c.targets = torch::randint(V, {N}, torch::kLong);
  return c;
}

// The loss per row, written out: alpha T^2 sum p (log p - log q) + (1 - alpha) (-log s[y]).
torch::Tensor reference_loss(const torch::Tensor& zs, const torch::Tensor& zt,
                             const torch::Tensor& y, double alpha, double T) {
  auto lp = torch::log_softmax(zt / T, 1), lq = torch::log_softmax(zs / T, 1);
  auto kl = (lp.exp() * (lp - lq)).sum(1);
  auto ce = -torch::log_softmax(zs, 1).gather(1, y.unsqueeze(1)).squeeze(1);
  return kl * (alpha * T * T) + ce * (1 - alpha);
}

// Value and gradients of distill_loss(...).sum() in h and w.
struct Got {
  DistillLoss d;
  torch::Tensor gh, gw;
};

Got run(const Case& c, const DistillTargets& t, double alpha, double T, int64_t chunk = 0) {
  auto h = c.h.clone().requires_grad_(true), w = c.w.clone().requires_grad_(true);
  DistillLossOptions o;
  o.alpha = alpha;
  o.temperature = T;
  o.chunk_rows = chunk;
  Got g{distill_loss(h, w, c.targets, t, o), {}, {}};
  g.d.loss.sum().backward();
  g.gh = h.grad();
  g.gw = w.grad();
  return g;
}

DistillTargets whole(const Case& c) {
  DistillTargets t;
  t.teacher_h = c.th;
  t.teacher_weight = c.tw;
  return t;
}

TEST(DistillLoss, WholeVocabularyMatchesTheFormulaAndItsGradient) {
  const Case c = make_case(5, 7, 4, 3, 1);
  for (double T : {1.0, 2.0}) {
    for (int64_t chunk : {0, 2}) {
      const double alpha = 0.3;
      Got g = run(c, whole(c), alpha, T, chunk);
      auto h = c.h.clone().requires_grad_(true), w = c.w.clone().requires_grad_(true);
      auto want = reference_loss(h.mm(w.t()), c.th.mm(c.tw.t()), c.targets, alpha, T);
      want.sum().backward();
      EXPECT_TRUE(torch::allclose(g.d.loss.to(torch::kFloat64), want.detach(), 1e-5, 1e-6))
          << "T " << T << "\n"
          << g.d.loss << want;
      EXPECT_TRUE(torch::allclose(g.gh.to(torch::kFloat64), h.grad(), 1e-4, 1e-6)) << T;
      EXPECT_TRUE(torch::allclose(g.gw.to(torch::kFloat64), w.grad(), 1e-4, 1e-6)) << T;
      // The parts: kl before alpha T^2 and the cross-entropy.
      auto recombined = g.d.kl * (alpha * T * T) + g.d.ce * (1 - alpha);
      EXPECT_TRUE(torch::allclose(recombined, g.d.loss, 1e-5, 1e-6));
      EXPECT_FALSE(g.d.kl.requires_grad());
    }
  }
}

TEST(DistillLoss, HandComputedRow) {
  // One row, V = 3, identity heads so the logits are h itself; alpha 0.5, T 2.
  Case c;
  c.h = torch::tensor({{1.0, 0.0, -1.0}}, torch::kFloat64);
  c.w = torch::eye(3, torch::kFloat64);
  c.th = torch::tensor({{0.0, 2.0, 0.0}}, torch::kFloat64);
  c.tw = torch::eye(3, torch::kFloat64);
  c.targets = torch::tensor({1}, torch::kLong);
  Got g = run(c, whole(c), 0.5, 2.0);
  // p = softmax([0, 1, 0]), q = softmax([0.5, 0, -0.5]), CE = lse([1, 0, -1]) - 0.
  const double ep = std::exp(1.0), zp = 2 + ep;
  const double p[3] = {1 / zp, ep / zp, 1 / zp};
  const double zq = std::exp(0.5) + 1 + std::exp(-0.5);
  const double q[3] = {std::exp(0.5) / zq, 1 / zq, std::exp(-0.5) / zq};
  double kl = 0;
  for (int i = 0; i < 3; ++i) kl += p[i] * std::log(p[i] / q[i]);
  const double ce = std::log(std::exp(1.0) + 1 + std::exp(-1.0));
  EXPECT_NEAR(g.d.kl.item<double>(), kl, 1e-6);
  EXPECT_NEAR(g.d.ce.item<double>(), ce, 1e-6);
  EXPECT_NEAR(g.d.loss.item<double>(), 0.5 * 4 * kl + 0.5 * ce, 1e-6);
  // d/dz = alpha T (q - p) + (1 - alpha) (softmax(z) - onehot(y)).
  const double zs = std::exp(1.0) + 1 + std::exp(-1.0);
  const double s[3] = {std::exp(1.0) / zs, 1 / zs, std::exp(-1.0) / zs};
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(g.gh[0][i].item<double>(), 0.5 * 2 * (q[i] - p[i]) + 0.5 * (s[i] - (i == 1)), 1e-6)
        << i;
}

TEST(DistillLoss, TopKRenormalisesOverTheTeachersBestTokens) {
  const Case c = make_case(6, 9, 4, 5, 2);
  const int64_t k = 3;
  for (double T : {1.0, 1.5}) {
    DistillTargets t = teacher_top_k(c.th, c.tw, k, T, /*chunk_rows=*/4);
    ASSERT_EQ(t.topk_ids.sizes(), torch::IntArrayRef({6, k}));
    auto zt = c.th.mm(c.tw.t());
    // The ids are the k largest teacher logits, the log-probabilities renormalised over them.
    auto [best, best_ids] = zt.topk(k, 1);
    auto sorted_got = std::get<0>(t.topk_ids.sort(1)), sorted_want = std::get<0>(best_ids.sort(1));
    EXPECT_TRUE(torch::equal(sorted_got, sorted_want));
    auto want_logp = torch::log_softmax(zt.gather(1, t.topk_ids) / T, 1);
    EXPECT_TRUE(torch::allclose(t.topk_logp.to(torch::kFloat64), want_logp, 1e-5, 1e-6));

    const double alpha = 0.6;
    Got g = run(c, t, alpha, T, /*chunk=*/4);
    auto h = c.h.clone().requires_grad_(true), w = c.w.clone().requires_grad_(true);
    auto zs = h.mm(w.t());
    auto lp = want_logp, lq = torch::log_softmax(zs.gather(1, t.topk_ids) / T, 1);
    auto kl = (lp.exp() * (lp - lq)).sum(1);
    auto ce = -torch::log_softmax(zs, 1).gather(1, c.targets.unsqueeze(1)).squeeze(1);
    auto want = kl * (alpha * T * T) + ce * (1 - alpha);
    want.sum().backward();
    EXPECT_TRUE(torch::allclose(g.d.kl.to(torch::kFloat64), kl.detach(), 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(g.d.loss.to(torch::kFloat64), want.detach(), 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(g.gh.to(torch::kFloat64), h.grad(), 1e-4, 1e-6));
    EXPECT_TRUE(torch::allclose(g.gw.to(torch::kFloat64), w.grad(), 1e-4, 1e-6));
  }
}

TEST(DistillLoss, AlphaZeroIsTheNextTokenLoss) {
  const Case c = make_case(5, 7, 4, 3, 3);
  for (const DistillTargets& t : {whole(c), teacher_top_k(c.th, c.tw, 2, 1.0)}) {
    Got g = run(c, t, 0.0, 3.0);
    auto h = c.h.clone().requires_grad_(true), w = c.w.clone().requires_grad_(true);
    auto logp = chunked_target_logprobs(h, w, c.targets);  // the trainer's own cross-entropy
    (-logp).sum().backward();
    EXPECT_TRUE(torch::allclose(g.d.loss, -logp.detach(), 1e-6, 1e-7));
    EXPECT_TRUE(torch::allclose(g.gh, h.grad(), 1e-6, 1e-7));
    EXPECT_TRUE(torch::allclose(g.gw, w.grad(), 1e-6, 1e-7));
  }
}

TEST(DistillLoss, AStudentEqualToItsTeacherHasNoLossAndNoGradientAtAlphaOne) {
  Case c = make_case(4, 6, 5, 5, 4);
  c.th = c.h.clone();
  c.tw = c.w.clone();
  for (const DistillTargets& t : {whole(c), teacher_top_k(c.th, c.tw, 3, 1.0)}) {
    Got g = run(c, t, 1.0, 1.0);
    EXPECT_LT(g.d.loss.abs().max().item<double>(), 1e-6) << g.d.loss;
    EXPECT_LT(g.gh.abs().max().item<double>(), 1e-6);
    EXPECT_LT(g.gw.abs().max().item<double>(), 1e-6);
    EXPECT_GT(g.d.ce.min().item<double>(), 0.0);  // the next-token part is still there
  }
}

TEST(DistillLoss, RefusesAnotherVocabulary) {
  const Case c = make_case(3, 7, 4, 3, 5);
  DistillTargets t;
  t.teacher_h = c.th;
  t.teacher_weight = torch::randn({8, 3}, torch::kFloat64);
  EXPECT_THROW(distill_loss(c.h, c.w, c.targets, t, {}), c10::Error);
}

}  // namespace
}  // namespace ktl
