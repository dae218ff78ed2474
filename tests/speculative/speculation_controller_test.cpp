#include "core/speculative/speculation_controller.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

namespace ktl {
namespace {

SpeculativeConfig config(SpeculativeMode mode, int k) {
  SpeculativeConfig c;
  c.mode = mode;
  c.num_tokens = k;
  return c;
}

// A simulated engine: a step of B sequences at k costs step_ms(B, k) and emits B * E(k) tokens,
// E(k) = (1 - alpha^(k+1)) / (1 - alpha). Returns the share of the last `tail` choices that
// were `want`.
double run(SpeculationController& c, int batch, double alpha,
           const std::function<double(int, int)>& step_ms, int steps, int want) {
  int hits = 0;
  const int tail = steps / 2;
  for (int i = 0; i < steps; ++i) {
    const int k = c.choose_k(batch);
    const double emitted = batch * (1 - std::pow(alpha, k + 1)) / (1 - alpha);
    c.record_step(batch, k, static_cast<int>(std::lround(emitted)), step_ms(batch, k));
    if (i >= steps - tail) hits += k == want;
  }
  return static_cast<double>(hits) / tail;
}

TEST(SpeculationController, OffAndFixed) {
  SpeculationController off(config(SpeculativeMode::kOff, 4));
  EXPECT_EQ(off.choose_k(1), 0);
  SpeculationController fixed(config(SpeculativeMode::kFixed, 3));
  EXPECT_EQ(fixed.choose_k(16), 3);
}

TEST(SpeculationController, MeasuresEveryKFirstLargestFirst) {
  SpeculationController c(config(SpeculativeMode::kAuto, 2));
  for (int want : {2, 2, 2, 1, 1, 1, 0, 0, 0}) {
    const int k = c.choose_k(1);
    EXPECT_EQ(k, want);
    c.record_step(1, k, 1 + k, 10);
  }
}

// Weight-bound steps (one stream): rows are nearly free, so the largest k wins at high
// acceptance. Compute-bound steps (many streams): every row costs, so k 0 wins.
TEST(SpeculationController, SpeculatesWhereItPaysAndStopsWhereItLoses) {
  auto cost = [](int batch, int k) { return 20.0 + 0.8 * batch * (1 + k); };
  SpeculationController one(config(SpeculativeMode::kAuto, 4));
  EXPECT_GT(run(one, 1, 0.9, cost, 400, 4), 0.85);
  SpeculationController many(config(SpeculativeMode::kAuto, 4));
  EXPECT_GT(run(many, 64, 0.6, cost, 400, 0), 0.85);
  EXPECT_GT(many.rate(64, 0), many.rate(64, 4));
}

TEST(SpeculationController, LowAcceptanceTurnsSpeculationOff) {
  auto cost = [](int batch, int k) { return 20.0 + 0.5 * batch * (1 + k) + 4.0 * k; };
  SpeculationController c(config(SpeculativeMode::kAuto, 4));
  EXPECT_GT(run(c, 1, 0.05, cost, 300, 0), 0.85);
}

TEST(SpeculationController, FollowsAChangeInAcceptance) {
  auto cost = [](int batch, int k) { return 20.0 + 0.5 * batch * (1 + k) + 2.0 * k; };
  SpeculationController c(config(SpeculativeMode::kAuto, 4));
  EXPECT_GT(run(c, 1, 0.95, cost, 300, 4), 0.8);
  EXPECT_GT(run(c, 1, 0.05, cost, 1200, 0), 0.8);  // exploration notices the drop
}

TEST(SpeculationController, BatchSizesAreMeasuredApart) {
  auto cost = [](int batch, int k) { return 20.0 + 0.8 * batch * (1 + k); };
  SpeculationController c(config(SpeculativeMode::kAuto, 4));
  run(c, 1, 0.9, cost, 200, 4);
  run(c, 64, 0.6, cost, 200, 0);
  EXPECT_EQ(c.choose_k(1), 4);  // the one-stream measurements still hold
}

TEST(SpeculationController, AcceptanceCountsKeptDraftTokens) {
  SpeculationController c(config(SpeculativeMode::kAuto, 4));
  EXPECT_EQ(c.acceptance(), 0.0);
  for (int i = 0; i < 10; ++i) c.record_verification(4, 3);
  EXPECT_NEAR(c.acceptance(), 0.75, 1e-9);
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
