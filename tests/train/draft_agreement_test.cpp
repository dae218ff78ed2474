// Draft-to-teacher agreement (core/train/draft_agreement.h): the sums against a hand
// computation, and a model compared with itself and with another.
#include "core/train/draft_agreement.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <vector>

#include "core/train/data_loader.h"

namespace ktl {
namespace {

TEST(DraftAgreement, SumsMatchAHandComputation) {
  // Row 0: q = (0.5, 0.3, 0.2), p = (0.2, 0.5, 0.3); row 1: the same distribution twice.
  auto q = torch::tensor({{0.5, 0.3, 0.2}, {0.1, 0.6, 0.3}}, torch::kFloat64);
  auto p = torch::tensor({{0.2, 0.5, 0.3}, {0.1, 0.6, 0.3}}, torch::kFloat64);
  const DraftAgreement s = agreement_sums(q.log() + 3.0, p.log() - 1.0);  // logits up to a shift
  EXPECT_EQ(s.tokens, 2);
  EXPECT_NEAR(s.top1, 1.0, 1e-9);  // argmax 0 vs 1, then 1 vs 1
  EXPECT_NEAR(s.acceptance, (0.2 + 0.3 + 0.2) + 1.0, 1e-6);
  const double kl0 =
      0.2 * std::log(0.2 / 0.5) + 0.5 * std::log(0.5 / 0.3) + 0.3 * std::log(0.3 / 0.2);
  EXPECT_NEAR(s.kl, kl0, 1e-6);
}

ModelConfig tiny(int layers) {
  ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.num_layers = layers;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.intermediate_size = 64;
  c.max_seq_length = 32;
  c.tie_word_embeddings = false;  // a tied head would make both predict the input token
  return c;
}

TEST(DraftAgreement, AModelAgreesWithItselfAndLessWithAnother) {
  std::vector<int64_t> tokens(600);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int64_t((i * 7 + i / 5) % 50);
  EvalBatches batches(std::make_shared<VectorTokenSource>(tokens), 4, 16, 3);
  Transformer a(tiny(2)), b(tiny(1));
  a->init_weights(1);
  b->init_weights(2);
  // Sharper distributions than the init's near-uniform ones, so the two differ clearly.
  {
    torch::NoGradGuard no_grad;
    a->lm_head->weight.mul_(50);
    b->lm_head->weight.mul_(50);
  }
  const DraftAgreement self =
      evaluate_draft_agreement(*a, *a, batches, Precision::kFp32, torch::kCPU);
  EXPECT_EQ(self.tokens, 3 * 4 * 16);
  EXPECT_NEAR(self.top1, 1.0, 1e-9);
  EXPECT_NEAR(self.acceptance, 1.0, 1e-5);
  EXPECT_NEAR(self.kl, 0.0, 1e-5);
  const DraftAgreement other =
      evaluate_draft_agreement(*b, *a, batches, Precision::kFp32, torch::kCPU);
  EXPECT_LT(other.acceptance, 0.99);
  EXPECT_GT(other.acceptance, 0.0);
  EXPECT_GT(other.kl, 0.01);
  EXPECT_LT(other.top1, 1.0);
  EXPECT_TRUE(a->is_training());  // the mode is restored
  ModelConfig bigger = tiny(1);
  bigger.vocab_size = 60;
  Transformer d(bigger);
  EXPECT_THROW(evaluate_draft_agreement(*d, *a, batches, Precision::kFp32, torch::kCPU),
               std::invalid_argument);
}

}  // namespace
}  // namespace ktl
