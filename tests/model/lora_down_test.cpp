// lora_down against its naive twin, (x * keep / (1 - p)) Aᵀ with plain ops on the same mask.
#include "core/model/lora_down.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/model/projection.h"

namespace ktl {
namespace {

torch::Tensor naive(const torch::Tensor& x, const torch::Tensor& a, const torch::Tensor& keep,
                    double p) {
  return torch::nn::functional::linear(x * keep.to(x.scalar_type()) / (1.0 - p), a);
}

TEST(LoraDown, ValuesAndGradientsMatchThePlainOpsOnTheSameMask) {
  torch::manual_seed(3);
  const double p = 0.25;
  auto x0 = torch::randn({2, 5, 12}), a0 = torch::randn({4, 12});
  auto keep = torch::rand({2, 5, 12}) > p;
  auto g = torch::randn({2, 5, 4});
  auto x1 = x0.clone().requires_grad_(true), a1 = a0.clone().requires_grad_(true);
  auto x2 = x0.clone().requires_grad_(true), a2 = a0.clone().requires_grad_(true);
  auto want = naive(x1, a1, keep, p);
  auto got = lora_down_masked(x2, a2, keep, p);
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-6));
  (want * g).sum().backward();
  (got * g).sum().backward();
  EXPECT_TRUE(torch::allclose(x2.grad(), x1.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(a2.grad(), a1.grad(), 1e-5, 1e-6));
}

TEST(LoraDown, UnderBf16AutocastRunsInBf16LikeTheLinear) {
  torch::manual_seed(4);
  const double p = 0.1;
  auto x0 = torch::randn({64, 32}), a0 = torch::randn({8, 32}) * 0.1;
  auto keep = torch::rand({64, 32}) > p;
  auto g = torch::randn({64, 8});
  auto x1 = x0.clone().requires_grad_(true), a1 = a0.clone().requires_grad_(true);
  auto x2 = x0.clone().requires_grad_(true), a2 = a0.clone().requires_grad_(true);
  torch::Tensor want, got;
  at::autocast::set_cpu_enabled(true);
  at::autocast::set_autocast_cpu_dtype(torch::kBFloat16);
  want = naive(x1, a1, keep, p);
  got = lora_down_masked(x2, a2, keep, p);
  at::autocast::set_cpu_enabled(false);
  at::autocast::clear_cache();
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(want.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(got.to(torch::kFloat32), want.to(torch::kFloat32), 2e-2, 2e-2));
  (want.to(torch::kFloat32) * g).sum().backward();
  (got.to(torch::kFloat32) * g).sum().backward();
  EXPECT_EQ(x2.grad().scalar_type(), torch::kFloat32);
  // bf16 products: each gradient within 1% of its largest entry (a bf16 step is 0.4-0.8%).
  for (auto [mine, theirs] : {std::pair{x2.grad(), x1.grad()}, std::pair{a2.grad(), a1.grad()}})
    EXPECT_LE((mine - theirs).abs().max().item<double>(), 0.01 * theirs.abs().max().item<double>());
}

// With A the identity the output is x's kept entries scaled by 1 / (1 - p): a fraction p of
// them dropped (200,000 draws: 4.5 standard deviations is 0.005).
TEST(LoraDown, DropsAFractionPAndScalesTheRest) {
  torch::manual_seed(5);
  const double p = 0.3;
  auto x = torch::rand({1000, 200}) + 1.0;  // no zeros of its own
  auto y = lora_down_dropout(x, torch::eye(200), p);
  auto dropped = (y == 0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(dropped, p, 0.005);
  auto kept = y != 0;
  EXPECT_TRUE(torch::allclose(y.masked_select(kept), x.masked_select(kept) / (1.0 - p)));
}

// A projection in training with dropout trains A and B through lora_down: gradients flow to both
// and nothing to the frozen weight.
TEST(LoraDown, ProjectionTrainsItsAdapterThroughIt) {
  torch::manual_seed(6);
  Projection proj(16, 8);
  proj->weight.set_requires_grad(false);
  proj->attach_lora(4, 2.0, 0.2, 9);
  {
    torch::NoGradGuard g;
    proj->lora_B.normal_(0, 0.1);
  }
  proj->train();
  proj(torch::randn({3, 16})).pow(2).sum().backward();
  EXPECT_GT(proj->lora_A.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(proj->lora_B.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(proj->weight.grad().defined());
}

}  // namespace
}  // namespace ktl
