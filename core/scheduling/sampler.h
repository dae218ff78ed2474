// Per-request token sampling over float logits.
//
// Order: repetition penalty (HF: divide positive logits, multiply negative ones, for tokens in
// the prompt or output) -> presence/frequency penalties (OpenAI: logit -= presence * [count > 0]
// + frequency * count, output tokens only) -> greedy argmax when temperature == 0 -> temperature
// -> top-k -> softmax -> min-p (p >= min_p * p_max) -> top-p (smallest set with mass >= top_p)
// -> draw from the renormalised rest. Sorting happens only when top-k/top-p need it, and then
// partially (nth_element, then a growing partial sort), so a 32000-token vocabulary stays cheap.
//
// Each request has its own std::mt19937_64: seeded from SamplingParams::seed when set (same
// seed + same prompt -> same text), otherwise from the constructor's fallback seed.
//
// Thread-safety: a Sampler is used by one thread at a time.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/scheduling/sampling_params.h"

namespace ktl {

// The distribution a Sampler draws from: candidate ids with unnormalised weights (p(id) =
// weight / total). Greedy: the one argmax id, weight 1. Speculative decoding verifies a draft
// token against it (core/speculative/).
struct TokenDistribution {
  std::vector<int> ids;
  std::vector<float> weights;
  double total = 0;
  double prob(int id) const;  // 0 for an id not among the candidates
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, const std::vector<int>& prompt_tokens,
          uint64_t fallback_seed);

  // Picks the next token. `logits` ([vocab]) is modified in place (penalties, masks). With
  // `candidates` (ascending ids, not empty) only those are considered, exactly as if every other
  // logit were -inf, at a cost that grows with their number (structured output's mask).
  int sample(float* logits, int vocab, const std::vector<int>* candidates = nullptr);
  // What sample() draws from, after penalties, temperature, top-k, min-p and top-p (same
  // arguments). The reference stays valid until the next distribution() or sample() call.
  const TokenDistribution& distribution(float* logits, int vocab,
                                        const std::vector<int>* candidates = nullptr);
  // A draw from `d` as sample() draws (greedy: its one id, no random number used).
  int draw(const TokenDistribution& d);
  // A uniform draw in [0, 1) from the request's generator (53 bits, identical across
  // platforms).
  double uniform();
  bool greedy() const { return p_.temperature == 0.0f; }
  // Restarts the generator from `seed` (a copy drawing for a speculative draft must not replay
  // the request's own random numbers).
  void reseed(uint64_t seed) { rng_.seed(seed); }
  // Records a generated token for the penalties. sample() does not call it: the engine may
  // choose not to keep a token.
  void accept(int token);

  // Applies the penalties only (exposed for tests).
  void apply_penalties(float* logits, int vocab) const;

  // Throws std::invalid_argument naming the bad field.
  static void validate(const SamplingParams& p);

 private:
  SamplingParams p_;
  std::unordered_set<int> seen_;             // prompt + output (repetition penalty)
  std::unordered_map<int, int> out_counts_;  // output only (presence/frequency)
  std::mt19937_64 rng_;
  std::vector<float> probs_;  // scratch
  std::vector<int> ids_;      // scratch
  TokenDistribution dist_;    // distribution()'s result
};

// Index of the largest value (first one on ties).
int argmax(const float* v, int n);

// Most rival tokens a log-probability may list (OpenAI's limit).
constexpr int kMaxTopLogprobs = 20;

// One token's log-probability under the raw logits, with its most likely rivals.
struct TokenLogprob {
  int token = -1;
  float logprob = 0;
  std::vector<std::pair<int, float>> top;  // (token, logprob), most likely first
};

// log_softmax(logits)[token] and the `top` largest entries (ties: lower id first), in one pass
// for the normaliser and one bounded selection: no copy of the row.
TokenLogprob token_logprob(const float* logits, int vocab, int token, int top);

}  // namespace ktl
