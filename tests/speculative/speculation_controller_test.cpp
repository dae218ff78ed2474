#include "core/speculative/speculation_controller.h"

#include <gtest/gtest.h>

namespace ktl {
namespace {

SpeculativeConfig config(SpeculativeMode mode, int k) {
  SpeculativeConfig c;
  c.mode = mode;
  c.num_tokens = k;
  return c;
}

TEST(LinearCostFit, RecoversALine) {
  LinearCostFit f;
  EXPECT_FALSE(f.ready());
  for (int i = 0; i < 50; ++i) f.add(1 + i % 7, 10 + 0.5 * (1 + i % 7));
  ASSERT_TRUE(f.ready());
  EXPECT_NEAR(f.intercept(), 10, 1e-6);
  EXPECT_NEAR(f.slope(), 0.5, 1e-6);
  EXPECT_NEAR(f.predict(20), 20, 1e-6);
}

TEST(LinearCostFit, OneRowCountIsAllFixedCost) {
  LinearCostFit f;
  f.add(4, 8);
  f.add(4, 12);
  EXPECT_FALSE(f.ready());
  EXPECT_NEAR(f.predict(100), 10, 0.05);  // the (weighted) mean, whatever x
}

TEST(SpeculationController, OffAndFixed) {
  EXPECT_EQ(SpeculationController(config(SpeculativeMode::kOff, 4), false).choose_k(1), 0);
  EXPECT_EQ(SpeculationController(config(SpeculativeMode::kFixed, 3), false).choose_k(16), 3);
}

TEST(SpeculationController, WeightBoundStepsSpeculateComputeBoundOnesDoNot) {
  SpeculationController c(config(SpeculativeMode::kAuto, 5), /*has_draft_cost=*/true);
  // Target: 20 ms to read the weights, 0.4 ms per row. Draft: 2 ms + 0.05 ms per sequence.
  for (int rows : {1, 2, 6, 16, 32, 96}) c.record_target_step(rows, 20 + 0.4 * rows);
  for (int s : {1, 4, 16}) c.record_draft_step(s, 2 + 0.05 * s);
  for (int i = 0; i < 200; ++i) c.record_verification(5, i % 4 == 0 ? 1 : 5);  // alpha ~0.9
  EXPECT_GT(c.acceptance(), 0.8);
  const int k1 = c.choose_k(1);
  EXPECT_GE(k1, 3);  // one stream: rows are nearly free
  EXPECT_GT(c.throughput(1, k1), 1.5 * c.throughput(1, 0));
  // 64 streams: each extra row costs 0.4 ms of a step already ~46 ms: not worth it.
  SpeculationController big(config(SpeculativeMode::kAuto, 5), true);
  for (int rows : {64, 128, 320}) big.record_target_step(rows, 2 + 0.8 * rows);
  for (int s : {1, 64}) big.record_draft_step(s, 2 + 0.2 * s);
  for (int i = 0; i < 200; ++i) big.record_verification(5, i % 2 == 0 ? 0 : 2);  // alpha ~0.5
  EXPECT_EQ(big.choose_k(64), 0);
}

TEST(SpeculationController, LowAcceptanceTurnsSpeculationOff) {
  SpeculationController c(config(SpeculativeMode::kAuto, 4), true);
  for (int rows : {1, 5, 20}) c.record_target_step(rows, 20 + 0.5 * rows);
  for (int s : {1, 4}) c.record_draft_step(s, 4 + 0.1 * s);
  for (int i = 0; i < 300; ++i) c.record_verification(4, 0);  // never kept
  EXPECT_LT(c.acceptance(), 0.05);
  EXPECT_EQ(c.choose_k(1), 0);
}

TEST(SpeculationController, SpeculatesUntilItHasMeasuredRowCosts) {
  SpeculationController c(config(SpeculativeMode::kAuto, 4), false);
  EXPECT_EQ(c.choose_k(2), 4);
  c.record_target_step(2, 30);
  EXPECT_EQ(c.choose_k(2), 4);  // one row count seen: no slope yet
}

TEST(ParseSpeculativeMode, Values) {
  EXPECT_EQ(parse_speculative_mode("off").mode, SpeculativeMode::kOff);
  EXPECT_EQ(parse_speculative_mode("auto").mode, SpeculativeMode::kAuto);
  const SpeculativeConfig k = parse_speculative_mode("6");
  EXPECT_EQ(k.mode, SpeculativeMode::kFixed);
  EXPECT_EQ(k.num_tokens, 6);
  for (const char* bad : {"", "0", "-1", "17", "5x", "yes"})
    EXPECT_THROW(parse_speculative_mode(bad), std::invalid_argument) << bad;
}

}  // namespace
}  // namespace ktl
