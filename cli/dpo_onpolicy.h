// `ktl dpo --rejected-from-model`: on-policy preference pairs. Before training, every pair's
// rejected answer is replaced by one the SFT model (the policy's starting checkpoint) samples
// for the pair's prompt through the serving engine (core/engine): `parallel` requests at a time
// from as many threads, which the engine batches (continuous batching, one forward for all of
// them each step). Pair i's attempt a uses seed `seed + 4 i + a`; the engine gives the same
// text for the same seed and prompt whatever else runs in the batch, so a run is reproducible
// with the same thread count (another count changes floating-point sums, and a near-tie can
// then sample another token). A sample that is empty, equals the chosen answer (whitespace
// trimmed) or holds a chat marker is drawn again, at most 3 more times; then the pair keeps its original rejected answer. A prompt longer than the
// model's context keeps it too.
// Not thread-safe (one call at a time; it runs its own threads inside).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/data/chat_data.h"

namespace ktl::cli {

struct OnPolicySampling {
  int max_tokens = 64;       // per answer
  float temperature = 0.8f;  // 0 = greedy (then every retry gives the same answer)
  float top_p = 0.95f;       // nucleus mass
  uint64_t seed = 1234;
  int parallel = 16;  // requests in flight (the engine's max_num_seqs)
  std::string device = "auto";
  int num_threads = 0;  // the engine's threads; 0 = every core
};

struct OnPolicyReport {
  int64_t sampled = 0;        // pairs whose rejected answer is now the model's
  int64_t resampled = 0;      // of those, pairs that needed more than one draw
  int64_t kept_original = 0;  // pairs that keep the file's rejected answer
  int64_t tokens = 0;         // generated tokens of the kept samples
  double seconds = 0;
};

// Replaces pairs[i].rejected as described above; `log` gets progress lines. Throws
// std::runtime_error when the checkpoint cannot be loaded, has no chat markers (not an SFT
// checkpoint) or the engine fails.
OnPolicyReport sample_rejected_from_model(const std::string& model_dir,
                                          std::vector<PreferencePair>& pairs,
                                          const OnPolicySampling& o,
                                          const std::function<void(const std::string&)>& log);

}  // namespace ktl::cli
