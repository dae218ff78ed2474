// Chooses how many tokens to speculate each step (`--speculative auto`), by measurement: for
// each batch size (exact up to 16 sequences, then 17-32, 33-64, 65+) and each k in [0, k_max]
// it keeps the tokens the engine emitted per millisecond and per sequence of decode steps run at
// that k (an exponential moving average),
// and picks the best k, trying the neighbours of the best every so often so that a change in
// acceptance or load is noticed. What a step costs (reading the weights once, per-row compute,
// the draft's passes, verification) and how many drafts are kept are all inside that one figure,
// so no cost model can be wrong about them: where speculation loses (a large, compute-bound
// batch, a draft that is rarely right) k 0 measures best and speculation is off for those steps.
// kFixed returns k_max; kOff 0.
//
// Thread-safety: none; the engine thread owns it.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/speculative/speculative_config.h"

namespace ktl {

class SpeculationController {
 public:
  static constexpr int kMaxK = 16;     // the largest k_max (parse_speculative_mode's bound)
  static constexpr int kBuckets = 19;  // batch sizes 1, 2, ..., 16, 17-32, 33-64, 65+
  static constexpr int kTrials = 3;    // steps each k is measured before the best is trusted
  static constexpr int kExplore = 16;  // every kExplore-th choice in a bucket tries a neighbour

  explicit SpeculationController(const SpeculativeConfig& cfg);

  // Tokens to propose per decoding sequence this step, for `num_decoding` of them.
  int choose_k(int num_decoding);
  // A decode-only step (no prefill chunk) of `num_decoding` sequences run at `k` emitted
  // `tokens` in `ms` (the whole step: drafting, the forward pass, verification).
  void record_step(int num_decoding, int k, int tokens, double ms);
  // One sequence's verification: `proposed` draft tokens, of which the first `accepted` kept.
  void record_verification(int proposed, int accepted);
  double acceptance() const;  // kept / proposed so far (decayed); 0 before any proposal
  // Measured tokens per ms and per sequence at (batch size, k); 0 when not measured.
  double rate(int num_decoding, int k) const;
  // One line for logs (KTL_ENGINE_PROFILE): acceptance and the rates of the last bucket used.
  std::string describe() const;

 private:
  struct Cell {
    double rate = 0;  // tokens per ms per sequence, EMA
    int samples = 0;
  };
  static int bucket(int num_decoding);
  int best_k(int b) const;

  SpeculativeConfig cfg_;
  std::array<std::array<Cell, kMaxK + 1>, kBuckets> cells_{};
  std::array<uint64_t, kBuckets> choices_{};  // choose_k calls per bucket
  int last_bucket_ = 0;
  double proposed_ = 0, kept_ = 0;  // decayed counts of draft tokens
};

}  // namespace ktl
