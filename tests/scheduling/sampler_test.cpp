#include "core/scheduling/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>

namespace ktl {
namespace {

std::vector<float> random_logits(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, 3.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

SamplingParams params(float t) {
  SamplingParams p;
  p.temperature = t;
  return p;
}

// Draws many samples; returns the set of tokens seen.
std::set<int> support(const SamplingParams& p, const std::vector<float>& logits, int draws) {
  Sampler s(p, {}, 42);
  std::set<int> seen;
  for (int i = 0; i < draws; ++i) {
    auto l = logits;
    seen.insert(s.sample(l.data(), static_cast<int>(l.size())));
  }
  return seen;
}

TEST(Sampler, GreedyIsArgmax) {
  for (uint64_t seed = 1; seed < 20; ++seed) {
    auto l = random_logits(32000, seed);
    const int expect = static_cast<int>(std::max_element(l.begin(), l.end()) - l.begin());
    Sampler s(params(0.f), {}, seed);
    EXPECT_EQ(s.sample(l.data(), 32000), expect);
  }
}

TEST(Sampler, TopKKeepsOnlyTheKLargest) {
  auto l = random_logits(1000, 3);
  auto p = params(5.0f);  // flat enough that all k show up
  p.top_k = 3;
  std::vector<int> order(l.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  EXPECT_EQ(support(p, l, 3000), (std::set<int>{order[0], order[1], order[2]}));
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  // probs 0.5, 0.3, 0.15, 0.05: top_p 0.8 keeps the first two, 0.81 the first three.
  std::vector<float> l = {std::log(0.05f), std::log(0.5f), std::log(0.15f), std::log(0.3f)};
  auto p = params(1.0f);
  p.top_p = 0.79f;
  EXPECT_EQ(support(p, l, 2000), (std::set<int>{1, 3}));
  p.top_p = 0.81f;
  EXPECT_EQ(support(p, l, 2000), (std::set<int>{1, 2, 3}));
  p.top_p = 1.0f;
  EXPECT_EQ(support(p, l, 4000), (std::set<int>{0, 1, 2, 3}));
}

TEST(Sampler, TopPOnLargeVocabGrowsThePartialSort) {
  std::vector<float> l(32000, 0.0f);  // uniform: a nucleus of 0.5 needs 16000 tokens
  auto p = params(1.0f);
  p.top_p = 0.5f;
  p.seed = 9;
  Sampler s(p, {}, 0);
  for (int i = 0; i < 200; ++i) {
    auto c = l;
    EXPECT_LT(s.sample(c.data(), 32000), 16001);  // ties broken by lower id
  }
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  std::vector<float> l = {std::log(0.6f), std::log(0.25f), std::log(0.1f), std::log(0.05f)};
  auto p = params(1.0f);
  p.min_p = 0.2f;  // threshold 0.12
  EXPECT_EQ(support(p, l, 3000), (std::set<int>{0, 1}));
}

TEST(Sampler, TemperatureSharpensTheDistribution) {
  std::vector<float> l = {1.0f, 0.0f};
  auto count0 = [&](float t) {
    Sampler s(params(t), {}, 5);
    int n = 0;
    for (int i = 0; i < 4000; ++i) {
      auto c = l;
      n += s.sample(c.data(), 2) == 0;
    }
    return n / 4000.0;
  };
  // p0 = sigmoid(1 / t)
  EXPECT_NEAR(count0(1.0f), 1 / (1 + std::exp(-1.0)), 0.03);
  EXPECT_NEAR(count0(0.25f), 1 / (1 + std::exp(-4.0)), 0.02);
}

TEST(Sampler, RepetitionPenaltyHfSemantics) {
  auto p = params(0.f);
  p.repetition_penalty = 2.0f;
  Sampler s(p, /*prompt=*/{0, 1}, 1);
  std::vector<float> l = {4.0f, -4.0f, 3.0f, -1.0f};
  s.apply_penalties(l.data(), 4);
  EXPECT_FLOAT_EQ(l[0], 2.0f);   // positive: divided
  EXPECT_FLOAT_EQ(l[1], -8.0f);  // negative: multiplied
  EXPECT_FLOAT_EQ(l[2], 3.0f);   // unseen: unchanged
  s.accept(3);
  l = {4.0f, -4.0f, 3.0f, -1.0f};
  EXPECT_EQ(s.sample(l.data(), 4), 2);  // 4 -> 2 loses to 3
  EXPECT_FLOAT_EQ(l[3], -2.0f);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesOpenAiSemantics) {
  auto p = params(0.f);
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler s(p, /*prompt=*/{2}, 1);  // prompt tokens are not penalised
  s.accept(0);
  s.accept(0);
  s.accept(1);
  std::vector<float> l = {1.0f, 1.0f, 1.0f};
  s.apply_penalties(l.data(), 3);
  EXPECT_FLOAT_EQ(l[0], 1.0f - 0.5f - 0.5f);
  EXPECT_FLOAT_EQ(l[1], 1.0f - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(l[2], 1.0f);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferent) {
  auto l = random_logits(32000, 11);
  auto run = [&](uint64_t seed) {
    auto p = params(1.0f);
    p.top_p = 0.95f;
    p.seed = seed;
    Sampler s(p, {}, /*fallback=*/seed * 7 + 1);
    std::vector<int> out;
    for (int i = 0; i < 50; ++i) {
      auto c = l;
      out.push_back(s.sample(c.data(), 32000));
    }
    return out;
  };
  EXPECT_EQ(run(123), run(123));
  EXPECT_NE(run(123), run(124));
}

TEST(Sampler, ValidateRejectsBadValues) {
  SamplingParams p;
  p.temperature = -1;
  EXPECT_THROW(Sampler::validate(p), std::invalid_argument);
  p = {};
  p.top_p = 0;
  EXPECT_THROW(Sampler::validate(p), std::invalid_argument);
  p = {};
  p.max_tokens = -1;
  EXPECT_THROW(Sampler::validate(p), std::invalid_argument);
  p = {};
  p.max_tokens = 0;  // scores the prompt only
  EXPECT_NO_THROW(Sampler::validate(p));
  p.logprobs = 21;
  EXPECT_THROW(Sampler::validate(p), std::invalid_argument);
  p = {};
  p.stop = {""};
  EXPECT_THROW(Sampler::validate(p), std::invalid_argument);
  EXPECT_NO_THROW(Sampler::validate(SamplingParams{}));
}

}  // namespace
}  // namespace ktl

// Structured output's fast path against its naive twin: drawing among candidate ids equals
// drawing from the whole row with every other logit at -inf, for every sampler setting.
namespace ktl {
TEST(Sampler, CandidatesEqualMaskingEveryOtherLogit) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const int V = 500;
  for (int trial = 0; trial < 40; ++trial) {
    SamplingParams p;
    p.temperature = trial % 5 == 0 ? 0.0f : 0.7f + 0.1f * (trial % 4);
    p.top_k = trial % 3 == 0 ? 0 : 20;
    p.top_p = trial % 2 ? 1.0f : 0.9f;
    p.min_p = trial % 7 == 0 ? 0.05f : 0.0f;
    p.repetition_penalty = trial % 4 == 0 ? 1.3f : 1.0f;
    p.seed = 100 + trial;
    std::vector<int> prompt = {5, 6, 7};
    Sampler masked(p, prompt, 0), among(p, prompt, 0);
    for (int step = 0; step < 20; ++step) {
      std::vector<float> logits(V);
      for (auto& x : logits) x = nd(rng);
      std::vector<int> candidates;
      for (int i = 0; i < V; ++i)
        if (rng() % (1 + trial % 50) == 0) candidates.push_back(i);
      if (candidates.empty()) candidates.push_back(static_cast<int>(rng() % V));
      std::vector<float> full = logits;
      for (int i = 0, c = 0; i < V; ++i) {
        if (c < static_cast<int>(candidates.size()) && candidates[c] == i) {
          ++c;
        } else {
          full[i] = -std::numeric_limits<float>::infinity();
        }
      }
      const int a = masked.sample(full.data(), V);
      const int b = among.sample(logits.data(), V, &candidates);
      ASSERT_EQ(a, b) << "trial " << trial << " step " << step;
      masked.accept(a);
      among.accept(b);
    }
  }
}
}  // namespace ktl
