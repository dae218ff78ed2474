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
  int max_tokens = 128;             // new tokens to generate
  std::vector<std::string> stop;    // stop strings; never part of the output
  std::vector<int> stop_token_ids;  // end like </s> (e.g. the chat end-of-turn <|end|>)
  bool ignore_eos = false;          // for benchmarks
};

}  // namespace ktl
