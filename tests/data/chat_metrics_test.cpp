// chrF and ROUGE-L with percentile-bootstrap 95% intervals (core/data/chat_metrics.h).
#include "core/data/chat_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace {

TEST(ChatMetricsInterval, KnownTwoPointSample) {
  // Resampling {0, 100} twice gives means 0, 50, 100 with probabilities 1/4, 1/2, 1/4: the
  // 2.5th percentile is 0 and the 97.5th is 100.
  const auto s = ktl::mean_interval({0.0, 100.0});
  EXPECT_DOUBLE_EQ(s.value, 50.0);
  EXPECT_DOUBLE_EQ(s.low, 0.0);
  EXPECT_DOUBLE_EQ(s.high, 100.0);
  EXPECT_EQ(s.n, 2);
  // No spread, no width; no examples, all zero.
  const auto flat = ktl::mean_interval(std::vector<double>(7, 42.0));
  EXPECT_DOUBLE_EQ(flat.low, 42.0);
  EXPECT_DOUBLE_EQ(flat.high, 42.0);
  const auto none = ktl::mean_interval({});
  EXPECT_EQ(none.n, 0);
  EXPECT_DOUBLE_EQ(none.high, 0.0);
}

TEST(ChatMetricsInterval, ContainsTheMeanAndShrinksWithN) {
  std::vector<double> xs;
  for (int i = 0; i < 20; ++i) xs.push_back(double((i * 37) % 101));  // a fixed, spread sample
  double mean = 0;
  for (double x : xs) mean += x;
  mean /= double(xs.size());
  const auto small = ktl::mean_interval(xs);
  EXPECT_NEAR(small.value, mean, 1e-12);
  EXPECT_LT(small.low, mean);
  EXPECT_GT(small.high, mean);
  // The same values four times (n = 80): the same mean, about half the width (1/sqrt(4)).
  std::vector<double> big;
  for (int r = 0; r < 4; ++r) big.insert(big.end(), xs.begin(), xs.end());
  const auto large = ktl::mean_interval(big);
  EXPECT_NEAR(large.value, mean, 1e-12);
  EXPECT_LT(large.low, mean);
  EXPECT_GT(large.high, mean);
  const double w_small = small.high - small.low, w_large = large.high - large.low;
  EXPECT_LT(w_large, w_small);
  EXPECT_NEAR(w_large / w_small, 0.5, 0.15);
  // Seeded: the same seed gives the same interval; the width is close to 2 * 1.96 * s / sqrt(n).
  const auto again = ktl::mean_interval(xs);
  EXPECT_DOUBLE_EQ(again.low, small.low);
  EXPECT_DOUBLE_EQ(again.high, small.high);
  double var = 0;
  for (double x : xs) var += (x - mean) * (x - mean);
  const double se = std::sqrt(var / double(xs.size())) / std::sqrt(double(xs.size()));
  EXPECT_NEAR(w_small, 2 * 1.96 * se, 0.2 * 2 * 1.96 * se);
}

TEST(ChatMetricsInterval, ChrfAndRougeLIntervalsAroundTheCorpusScores) {
  const std::vector<std::string> hyps = {
      "안녕하세요", "오늘 날씨가 좋네요", "가나다", "밥 먹었어요?", "잘 자요", "모르겠어요"};
  const std::vector<std::string> refs = {"안녕하세요!",    "날씨가 좋아요", "가다라",
                                         "밥은 먹었어요?", "잘 자",         "좋은 생각이에요"};
  const auto c = ktl::chrf_interval(hyps, refs);
  EXPECT_DOUBLE_EQ(c.value, ktl::chrf(hyps, refs));
  EXPECT_LE(c.low, c.value);
  EXPECT_GE(c.high, c.value);
  EXPECT_LT(c.low, c.high);
  EXPECT_EQ(c.n, 6);
  const auto r = ktl::rouge_l_interval(hyps, refs);
  EXPECT_NEAR(r.value, ktl::rouge_l(hyps, refs), 1e-9);
  EXPECT_LE(r.low, r.value);
  EXPECT_GE(r.high, r.value);
  EXPECT_NE(ktl::format_interval(c).find("[95% CI "), std::string::npos);
  EXPECT_NE(ktl::format_interval(c).find("; n=6]"), std::string::npos);
  EXPECT_THROW(ktl::chrf_interval({"a"}, {}), std::invalid_argument);
}

}  // namespace
