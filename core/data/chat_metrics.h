// Reference-based scores for generated chat answers, both on characters because Korean spacing
// varies (띄어쓰기): a word-level metric punishes "안녕 하세요" vs "안녕하세요" as a full miss.
// - chrF (Popovic 2015, as sacrebleu's default): character n-grams n = 1..6 with whitespace
//   removed, precision and recall averaged over n, F-beta with beta = 2 (recall weighs more).
//   Corpus level: n-gram statistics are summed over all pairs first. 0..100.
// - ROUGE-L: longest common subsequence over characters (Hangul: syllables), whitespace
//   removed, F1 per pair, averaged over pairs. 0..100.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

namespace ktl {

double chrf(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references,
            int max_n = 6, double beta = 2.0);
double rouge_l(const std::vector<std::string>& hypotheses,
               const std::vector<std::string>& references);

}  // namespace ktl
