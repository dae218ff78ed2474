#include "core/speculative/rejection_sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace ktl {
namespace {

constexpr int kVocab = 6;

// Target logits, draft logits: deliberately different, so the draft is often wrong.
const std::vector<float> kTarget = {2.0f, 1.0f, 0.5f, -1.0f, 0.0f, 1.5f};
const std::vector<float> kDraft = {0.0f, 2.0f, 0.5f, 1.0f, -2.0f, 1.5f};

SamplingParams params(float temperature, int top_k = 0, float top_p = 1.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  return p;
}

// Pearson chi-squared of counts against probabilities (cells with zero probability must be
// empty: they count as a failure).
double chi_squared(const std::vector<int>& counts, const std::vector<double>& probs, int n) {
  double x2 = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (probs[i] == 0) {
      if (counts[i] != 0) return 1e9;
      continue;
    }
    const double e = probs[i] * n;
    x2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return x2;
}

// The first emitted token of speculative sampling: draw d from the draft's q, verify it against
// the target's p. Its distribution must be p's, whatever q is.
std::vector<int> speculative_counts(const SamplingParams& sp, int n, uint64_t seed,
                                    double* acceptance) {
  Sampler target(sp, {}, seed), draft(sp, {}, seed + 1);
  std::vector<int> counts(kVocab, 0);
  int kept = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<float> dl = kDraft, tl = kTarget;
    const TokenDistribution q = draft.distribution(dl.data(), kVocab);
    const int d = draft.draw(q);
    const TokenDistribution p = target.distribution(tl.data(), kVocab);
    const DraftVerdict v = verify_draft_token(p, &q, d, target);
    kept += v.accepted;
    ++counts[v.token];
  }
  *acceptance = static_cast<double>(kept) / n;
  return counts;
}

std::vector<double> target_probs(const SamplingParams& sp) {
  Sampler s(sp, {}, 1);
  std::vector<float> tl = kTarget;
  const TokenDistribution& p = s.distribution(tl.data(), kVocab);
  std::vector<double> out(kVocab, 0.0);
  for (int t = 0; t < kVocab; ++t) out[t] = p.prob(t);
  return out;
}

// Chi-squared at significance 0.001 (a false failure once in a thousand seeds; the seeds are
// fixed, so the test is deterministic): critical values for (cells with p > 0) - 1 degrees of
// freedom.
TEST(RejectionSampler, SpeculativeSamplesFollowTheTargetDistribution) {
  struct Case {
    SamplingParams sp;
    double critical;  // chi-squared, p = 0.001, df = support - 1
  };
  const std::vector<Case> cases = {
      {params(1.0f), 20.52},           // df 5
      {params(0.7f), 20.52},           // df 5
      {params(1.0f, 3), 13.82},        // top-k 3: df 2
      {params(1.3f, 0, 0.8f), 20.52},  // top-p: support at most 6
  };
  const int n = 200000;
  for (size_t c = 0; c < cases.size(); ++c) {
    double acceptance = 0;
    const std::vector<int> counts = speculative_counts(cases[c].sp, n, 100 + c, &acceptance);
    const std::vector<double> p = target_probs(cases[c].sp);
    int support = 0;
    for (double x : p) support += x > 0;
    const double x2 = chi_squared(counts, p, n);
    EXPECT_LT(x2, cases[c].critical) << "case " << c << " support " << support;
    // The draft differs from the target, so some tokens were replaced, and some were kept.
    EXPECT_GT(acceptance, 0.2) << "case " << c;
    EXPECT_LT(acceptance, 0.95) << "case " << c;
  }
}

TEST(RejectionSampler, AcceptanceIsTheOverlapOfTheTwoDistributions) {
  // E[accept] = sum_x min(p(x), q(x)) for the full rule.
  const SamplingParams sp = params(1.0f);
  double acceptance = 0;
  speculative_counts(sp, 100000, 7, &acceptance);
  Sampler a(sp, {}, 1), b(sp, {}, 1);
  std::vector<float> tl = kTarget, dl = kDraft;
  const TokenDistribution p = a.distribution(tl.data(), kVocab);
  const TokenDistribution q = b.distribution(dl.data(), kVocab);
  double overlap = 0;
  for (int t = 0; t < kVocab; ++t) overlap += std::min(p.prob(t), q.prob(t));
  EXPECT_NEAR(acceptance, overlap, 0.01);
}

TEST(RejectionSampler, OneHotDraftsKeepTheTargetDistribution) {
  // Prompt lookup proposes a fixed token: kept with probability p(d), else a draw from p
  // without d. The emitted token is still distributed as p.
  const SamplingParams sp = params(1.0f);
  Sampler target(sp, {}, 5);
  std::vector<int> counts(kVocab, 0);
  const int n = 200000;
  int kept = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<float> tl = kTarget;
    const TokenDistribution p = target.distribution(tl.data(), kVocab);
    const DraftVerdict v = verify_draft_token(p, nullptr, 1, target);
    kept += v.accepted;
    ++counts[v.token];
  }
  const std::vector<double> p = target_probs(sp);
  EXPECT_LT(chi_squared(counts, p, n), 20.52);
  EXPECT_NEAR(static_cast<double>(kept) / n, p[1], 0.01);
}

TEST(RejectionSampler, GreedyKeepsExactlyTheArgmax) {
  const SamplingParams sp = params(0.0f);
  Sampler s(sp, {}, 1);
  std::vector<float> tl = kTarget;
  const TokenDistribution p = s.distribution(tl.data(), kVocab);
  ASSERT_EQ(p.ids.size(), 1u);
  EXPECT_EQ(p.ids[0], 0);
  for (int d = 0; d < kVocab; ++d) {
    const DraftVerdict v = verify_draft_token(p, nullptr, d, s);
    EXPECT_EQ(v.accepted, d == 0);
    EXPECT_EQ(v.token, 0);
  }
}

TEST(RejectionSampler, DistributionMatchesWhatSampleDraws) {
  // sample() is distribution() then draw(): the same seed gives the same tokens either way.
  const SamplingParams sp = params(0.9f, 4, 0.9f);
  Sampler a(sp, {}, 42), b(sp, {}, 42);
  for (int i = 0; i < 200; ++i) {
    std::vector<float> x = kTarget, y = kTarget;
    EXPECT_EQ(a.sample(x.data(), kVocab), b.draw(b.distribution(y.data(), kVocab)));
  }
}

}  // namespace
}  // namespace ktl
