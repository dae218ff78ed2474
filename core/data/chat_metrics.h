// Reference-based scores for generated chat answers, both on characters because Korean spacing
// varies (띄어쓰기): a word-level metric punishes "안녕 하세요" vs "안녕하세요" as a full miss.
// - chrF (Popovic 2015, as sacrebleu's default): character n-grams n = 1..6 with whitespace
//   removed, precision and recall averaged over n, F-beta with beta = 2 (recall weighs more).
//   Corpus level: n-gram statistics are summed over all pairs first. 0..100.
// - ROUGE-L: longest common subsequence over characters (Hangul: syllables), whitespace
//   removed, F1 per pair, averaged over pairs. 0..100.
// With a 95% confidence interval: percentile bootstrap over the examples (resample the n
// (hypothesis, reference) pairs with replacement, recompute the corpus-level score, 1000 times;
// the interval runs from the 2.5th to the 97.5th percentile, nearest rank). The resampling is
// seeded and platform-independent (SplitMix64 indices), so the same inputs give the same
// interval everywhere.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ktl {

double chrf(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references,
            int max_n = 6, double beta = 2.0);
double rouge_l(const std::vector<std::string>& hypotheses,
               const std::vector<std::string>& references);

// A score on n examples with its bootstrap interval [low, high] (all 0 when n = 0).
struct ScoreInterval {
  double value = 0, low = 0, high = 0;
  int64_t n = 0;
  double level = 0.95;
};

struct BootstrapOptions {
  int resamples = 1000;
  uint64_t seed = 1234;
  double level = 0.95;
};

ScoreInterval chrf_interval(const std::vector<std::string>& hypotheses,
                            const std::vector<std::string>& references,
                            const BootstrapOptions& o = {}, int max_n = 6, double beta = 2.0);
ScoreInterval rouge_l_interval(const std::vector<std::string>& hypotheses,
                               const std::vector<std::string>& references,
                               const BootstrapOptions& o = {});
// The mean of `xs` with its percentile-bootstrap interval (ROUGE-L is this over per-pair F1).
ScoreInterval mean_interval(const std::vector<double>& xs, const BootstrapOptions& o = {});

// "8.83 [95% CI 7.10, 10.42; n=50]".
std::string format_interval(const ScoreInterval& s);

}  // namespace ktl
