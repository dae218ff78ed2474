// The chunked head against its naive twin: log_softmax(h W^T).gather(targets) on whole logits.
#include "core/train/chunked_lm_head.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/train/mixed_precision.h"

namespace {

struct Case {
  torch::Tensor h, w, targets;  // [N, D], [V, D], [N]
};

Case make_case(int64_t N, int64_t D, int64_t V, uint64_t seed) {
  torch::manual_seed(seed);
  Case c;
  c.h = torch::randn({N, D});
  c.w = torch::randn({V, D}) * 0.3;
  c.targets = torch::randint(0, V, {N}, torch::kLong);
  c.targets.index_put_({torch::arange(0, N, 3)}, -100);  // every third row ignored
  return c;
}

torch::Tensor naive(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& t) {
  auto logp = torch::log_softmax(torch::mm(h, w.t()).to(torch::kFloat32), 1);  // [N, V]
  auto keep = t != -100;
  auto picked = logp.gather(1, t.clamp_min(0).unsqueeze(1)).squeeze(1);  // [N]
  return picked * keep.to(torch::kFloat32);
}

TEST(ChunkedLmHead, ValuesAndGradientsMatchTheWholeLogitsFp32) {
  torch::set_num_threads(1);
  const auto c = make_case(37, 16, 53, 3);
  auto g = torch::randn({37});  // an arbitrary upstream gradient
  auto h0 = c.h.clone().requires_grad_(true), w0 = c.w.clone().requires_grad_(true);
  auto ref = naive(h0, w0, c.targets);
  (ref * g).sum().backward();
  for (int64_t chunk : {1, 5, 36, 37, 100, 0}) {
    auto h = c.h.clone().requires_grad_(true), w = c.w.clone().requires_grad_(true);
    auto out = ktl::chunked_target_logprobs(h, w, c.targets, -100, chunk);
    EXPECT_TRUE(torch::allclose(out, ref, 1e-5, 1e-6)) << chunk;
    EXPECT_EQ(out.masked_select(c.targets == -100).abs().sum().item<float>(), 0.f);
    (out * g).sum().backward();
    EXPECT_TRUE(torch::allclose(h.grad(), h0.grad(), 1e-5, 1e-6)) << chunk;
    EXPECT_TRUE(torch::allclose(w.grad(), w0.grad(), 1e-5, 1e-6)) << chunk;
  }
}

TEST(ChunkedLmHead, FrozenWeightGetsNoGradientAndNoGradModeJustComputes) {
  const auto c = make_case(12, 8, 20, 4);
  auto h = c.h.clone().requires_grad_(true);
  auto out = ktl::chunked_target_logprobs(h, c.w, c.targets, -100, 5);
  out.sum().backward();
  EXPECT_TRUE(h.grad().defined());
  EXPECT_FALSE(c.w.grad().defined());
  torch::NoGradGuard no_grad;
  auto again = ktl::chunked_target_logprobs(c.h, c.w, c.targets, -100, 7);
  EXPECT_TRUE(torch::allclose(again, naive(c.h, c.w, c.targets), 1e-5, 1e-6));
}

// Under bf16 autocast both run their products in bf16: the same values and gradients up to
// the order of summation.
TEST(ChunkedLmHead, UnderBf16AutocastMatchesTheAutocastHead) {
  const auto c = make_case(64, 32, 97, 5);
  auto g = torch::randn({64});
  auto h0 = c.h.clone().requires_grad_(true), w0 = c.w.clone().requires_grad_(true);
  auto h = c.h.clone().requires_grad_(true), w = c.w.clone().requires_grad_(true);
  torch::Tensor ref, out;
  {
    ktl::AutocastScope autocast(ktl::Precision::kBf16, torch::kCPU);
    auto logits = torch::nn::functional::linear(h0, w0);  // bf16 under autocast
    EXPECT_EQ(logits.scalar_type(), torch::kBFloat16);
    ref = torch::log_softmax(logits.to(torch::kFloat32), 1)
              .gather(1, c.targets.clamp_min(0).unsqueeze(1))
              .squeeze(1) *
          (c.targets != -100).to(torch::kFloat32);
    out = ktl::chunked_target_logprobs(h, w, c.targets, -100, 10);
  }
  EXPECT_TRUE(torch::allclose(out, ref, 1e-3, 1e-3)) << (out - ref).abs().max();
  (ref * g).sum().backward();
  (out * g).sum().backward();
  EXPECT_TRUE(torch::allclose(h.grad(), h0.grad(), 2e-2, 2e-2))
      << (h.grad() - h0.grad()).abs().max();
  EXPECT_TRUE(torch::allclose(w.grad(), w0.grad(), 2e-2, 2e-2))
      << (w.grad() - w0.grad()).abs().max();
}

}  // namespace
