// Projection against torch::nn::Linear's math and a hand-written LoRA formula.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/model/projection.h"

namespace ktl {
namespace {

TEST(Projection, WithoutAdapterIsAPlainLinear) {
  torch::manual_seed(1);
  Projection p(6, 4);
  auto x = torch::randn({3, 6});
  EXPECT_TRUE(torch::allclose(p(x), torch::matmul(x, p->weight.t())));
  EXPECT_EQ(p->named_parameters().size(), 1u);
}

TEST(Projection, AdapterAddsScaledLowRankProduct) {
  torch::manual_seed(2);
  Projection p(6, 4);
  p->attach_lora(/*rank=*/2, /*scale=*/1.5, /*dropout=*/0.0, /*seed=*/7);
  auto x = torch::randn({3, 6});
  // B starts at zero: the output is the base's.
  EXPECT_TRUE(torch::allclose(p(x), torch::matmul(x, p->weight.t())));
  {
    torch::NoGradGuard g;
    p->lora_B.copy_(torch::randn({4, 2}));
  }
  auto want = torch::matmul(x, p->weight.t()) +
              1.5 * torch::matmul(torch::matmul(x, p->lora_A.t()), p->lora_B.t());
  EXPECT_TRUE(torch::allclose(p(x), want, 1e-5, 1e-6));
  auto names = p->named_parameters().keys();
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "lora_A", "lora_B"}));
  // A is drawn as nn.Linear draws a weight: |A| <= 1/sqrt(in).
  EXPECT_LE(p->lora_A.abs().max().item<double>(), 1.0 / std::sqrt(6.0));
  EXPECT_THROW(p->attach_lora(2, 1.0, 0.0, 1), std::logic_error);
}

TEST(Projection, MergeFoldsTheAdapterIntoTheWeight) {
  torch::manual_seed(3);
  Projection p(8, 5);
  p->attach_lora(3, 0.5, 0.0, 9);
  {
    torch::NoGradGuard g;
    p->lora_B.copy_(torch::randn({5, 3}));
  }
  auto x = torch::randn({2, 8});
  auto before = p(x).detach();
  p->merge_lora();
  EXPECT_FALSE(p->has_lora());
  EXPECT_EQ(p->named_parameters().size(), 1u);
  EXPECT_TRUE(torch::allclose(p(x), before, 1e-5, 1e-6));
}

TEST(Projection, DropoutOnlyInTraining) {
  torch::manual_seed(4);
  Projection p(16, 16);
  p->attach_lora(4, 1.0, 0.5, 1);
  {
    torch::NoGradGuard g;
    p->lora_B.fill_(0.1);
  }
  auto x = torch::randn({4, 16});
  p->eval();
  EXPECT_TRUE(torch::equal(p(x), p(x)));
  p->train();
  EXPECT_FALSE(torch::allclose(p(x), p(x)));
}

}  // namespace
}  // namespace ktl
