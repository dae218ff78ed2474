#include "core/speculative/speculation_controller.h"

#include <algorithm>
#include <cmath>

namespace ktl {

void LinearCostFit::add(double x, double y) {
  s0_ = decay_ * s0_ + 1;
  sx_ = decay_ * sx_ + x;
  sy_ = decay_ * sy_ + y;
  sxx_ = decay_ * sxx_ + x * x;
  sxy_ = decay_ * sxy_ + x * y;
  n_ += 1;
}

double LinearCostFit::slope() const {
  if (!ready()) return 0;
  return std::max(0.0, (s0_ * sxy_ - sx_ * sy_) / spread());
}

double LinearCostFit::intercept() const {
  if (s0_ <= 0) return 0;
  if (!ready()) return sy_ / s0_;  // one x seen: its mean cost, all of it fixed
  return std::max(0.0, (sy_ - slope() * sx_) / s0_);
}

double LinearCostFit::predict(double x) const {
  return intercept() + slope() * x;
}

SpeculationController::SpeculationController(const SpeculativeConfig& cfg, bool has_draft_cost)
    : cfg_(cfg), has_draft_cost_(has_draft_cost) {}

void SpeculationController::record_verification(int proposed, int accepted) {
  constexpr double kDecay = 0.99;  // about the last hundred verifications
  kept_ = kDecay * kept_ + accepted;
  rejected_ = kDecay * rejected_ + (accepted < proposed ? 1 : 0);
}

double SpeculationController::acceptance() const {
  constexpr double kPrior = 2;  // pseudo-counts: alpha 0.5 until evidence outweighs them
  return (kept_ + 0.5 * kPrior) / (kept_ + rejected_ + kPrior);
}

double SpeculationController::throughput(int num_decoding, int k) const {
  const double alpha = std::min(acceptance(), 0.999);
  const double tokens = num_decoding * (1 - std::pow(alpha, k + 1)) / (1 - alpha);
  double ms = target_.predict(num_decoding * (1.0 + k));
  if (has_draft_cost_) ms += k * draft_.predict(num_decoding);
  return ms > 0 ? tokens / ms : 0;
}

int SpeculationController::choose_k(int num_decoding) const {
  if (cfg_.mode == SpeculativeMode::kOff || num_decoding <= 0) return 0;
  if (cfg_.mode == SpeculativeMode::kFixed) return cfg_.num_tokens;
  // Until the target's cost has a slope (two row counts seen), speculate: it is the only way
  // to measure what more rows cost.
  if (!target_.ready()) return cfg_.num_tokens;
  int best = 0;
  double best_rate = throughput(num_decoding, 0);
  for (int k = 1; k <= cfg_.num_tokens; ++k) {
    const double rate = throughput(num_decoding, k);
    if (rate > best_rate * 1.02) {  // a 2% margin: noise in the fit should not buy rows
      best = k;
      best_rate = rate;
    }
  }
  return best;
}

}  // namespace ktl
