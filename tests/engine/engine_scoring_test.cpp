// engine_window_nll (ktl eval --dtype) against the training module's summed cross-entropy of the
// same windows: equal in fp32, close in bf16 and int8.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "core/engine/engine_model.h"
#include "core/engine/engine_scoring.h"
#include "core/model/model.h"
#include "tests/support/engine_fixture.h"

namespace ktl {
namespace {

// [b, T+1] ids in [4, 304).
torch::Tensor windows(int b, int T, uint64_t seed) {
  const auto v = testing::random_tokens(b * (T + 1), seed);
  return torch::tensor(std::vector<int64_t>(v.begin(), v.end()), torch::kLong).view({b, T + 1});
}

// What core/train/evaluation.cpp computes: inputs [0, T), targets [1, T], summed.
double module_nats(Transformer& m, const torch::Tensor& w) {
  torch::NoGradGuard ng;
  const auto T = w.size(1) - 1;
  auto logits = m->forward(w.narrow(1, 0, T));
  return torch::nn::functional::cross_entropy(
             logits.reshape({-1, logits.size(-1)}), w.narrow(1, 1, T).reshape({-1}),
             torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
      .item<double>();
}

TEST(EngineScoring, Fp32EqualsTheTrainingModuleAndBf16Int8StayClose) {
  // Matrices scaled 6x: peaked distributions, so quantization moves the loss measurably.
  Transformer m = testing::margin_model(3);
  m->eval();
  // Odd sizes: windows that end mid-block, more rows than one block table.
  const auto w = windows(3, 45, 11);
  const double want = module_nats(m, w);
  const auto fp32 = engine_window_nll(EngineModel::from_module(*m, WeightDtype::kFp32), w);
  EXPECT_EQ(fp32.tokens, 3 * 45);
  EXPECT_NEAR(fp32.nats, want, 1e-5 * want);
  for (auto d : {WeightDtype::kBf16, WeightDtype::kInt8}) {
    const auto q = engine_window_nll(EngineModel::from_module(*m, d), w);
    EXPECT_TRUE(std::isfinite(q.nats)) << to_string(d);
    EXPECT_NE(q.nats, fp32.nats) << to_string(d) << ": the weights should really be converted";
    EXPECT_NEAR(q.nats, want, 0.02 * want) << to_string(d);
  }
}

TEST(EngineScoring, RefusesBadShapesAndWindowsPastTheContext) {
  Transformer m = testing::margin_model(3);
  const auto e = EngineModel::from_module(*m, WeightDtype::kFp32);
  EXPECT_THROW(engine_window_nll(e, torch::zeros({4}, torch::kLong)), std::invalid_argument);
  EXPECT_THROW(engine_window_nll(e, torch::zeros({2, 1}, torch::kLong)), std::invalid_argument);
  const int ctx = m->config().max_seq_length;
  EXPECT_THROW(engine_window_nll(e, windows(1, ctx + 1, 1)), std::invalid_argument);
  EXPECT_EQ(engine_window_nll(e, windows(1, ctx, 1)).tokens, ctx);
}

}  // namespace
}  // namespace ktl
