// Chooses how many tokens to speculate each step (`--speculative auto`), from measurements the
// engine feeds it: the target's step time by rows computed, the draft's step time by sequences,
// and how many draft tokens verification kept.
//
// Model: a target step over R rows costs a + b R (a: reading the weights once, b: per-row
// compute), fitted by exponentially weighted least squares; a draft step over S sequences costs
// c + e S. Each draft token is kept with probability alpha until the first rejection, so a
// sequence speculating k tokens emits E(k) = (1 - alpha^(k+1)) / (1 - alpha) tokens per step.
// For B decoding sequences the controller picks the k in [0, k_max] with the most tokens per
// millisecond, B E(k) / (a + b B (1 + k) + k (c + e B)): on one stream, where a dominates, k
// grows; in a large batch, where the step is compute-bound, k drops to 0 and speculation is off
// for that step. In kFixed mode it returns k_max; in kOff, 0.
//
// Thread-safety: none; the engine thread owns it.
#pragma once

#include "core/speculative/speculative_config.h"

namespace ktl {

// y = a + b x fitted by least squares with exponential forgetting (recent steps count most).
class LinearCostFit {
 public:
  explicit LinearCostFit(double decay = 0.98) : decay_(decay) {}
  void add(double x, double y);
  bool ready() const { return n_ >= 2 && spread() > 0; }  // two distinct x seen
  double predict(double x) const;                         // 0 before any sample
  double intercept() const;
  double slope() const;
  double samples() const { return n_; }

 private:
  double spread() const { return s0_ * sxx_ - sx_ * sx_; }
  double decay_;
  double n_ = 0;  // samples seen (not decayed)
  double s0_ = 0, sx_ = 0, sy_ = 0, sxx_ = 0, sxy_ = 0;
};

class SpeculationController {
 public:
  // `has_draft_cost`: proposals cost a draft model's forward passes (false: prompt lookup).
  SpeculationController(const SpeculativeConfig& cfg, bool has_draft_cost);

  // Tokens to propose per decoding sequence this step, for `num_decoding` of them.
  int choose_k(int num_decoding) const;
  // The model's expected tokens per millisecond at k (for tests and logs).
  double throughput(int num_decoding, int k) const;

  void record_target_step(int rows, double ms) { target_.add(rows, ms); }
  void record_draft_step(int seqs, double ms) { draft_.add(seqs, ms); }
  // One sequence's verification: `proposed` draft tokens, of which the first `accepted` kept.
  void record_verification(int proposed, int accepted);
  double acceptance() const;  // alpha, with a weak prior of 0.5 before evidence

 private:
  SpeculativeConfig cfg_;
  bool has_draft_cost_;
  LinearCostFit target_, draft_;
  double kept_ = 0, rejected_ = 0;  // decayed counts of kept and rejected draft tokens
};

}  // namespace ktl
