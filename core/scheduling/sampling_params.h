// Per-request generation settings. Plain data; copy freely.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ktl {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy
  float top_p = 1.0f;               // nucleus: keep the smallest set with mass >= top_p
  int top_k = 0;                    // 0 = off
  float min_p = 0.0f;               // drop tokens with p < min_p * p_max; 0 = off
  float repetition_penalty = 1.0f;  // >1 discourages tokens already in prompt or output
  float presence_penalty = 0.0f;    // OpenAI semantics: subtract once if the token appeared
  float frequency_penalty = 0.0f;   // OpenAI semantics: subtract per occurrence
  std::optional<uint64_t> seed;     // same seed + same prompt -> same text
  int max_tokens = 128;             // new tokens to generate; 0 = score the prompt only
  std::vector<std::string> stop;    // stop strings; never part of the output
  std::vector<int> stop_token_ids;  // end like </s> (e.g. the chat end-of-turn <|end|>)
  bool ignore_eos = false;          // for benchmarks
  // Log-probabilities (the model's raw log-softmax, before penalties, temperature and any
  // grammar mask): -1 = none; k >= 0 = each generated token's, plus its k most likely rivals.
  int logprobs = -1;
  // Also the prompt's tokens (echo), from the prefill itself. Such a request never attaches
  // cached prefix blocks: its prompt is recomputed so that every position has logits.
  bool prompt_logprobs = false;
};

}  // namespace ktl
