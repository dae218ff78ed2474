#include "core/speculative/speculation_controller.h"

#include <algorithm>
#include <cstdio>

namespace ktl {

SpeculationController::SpeculationController(const SpeculativeConfig& cfg) : cfg_(cfg) {
  cfg_.num_tokens = std::clamp(cfg_.num_tokens, 0, kMaxK);
}

int SpeculationController::bucket(int num_decoding) {
  const int n = std::max(num_decoding, 1);
  if (n <= 16) return n - 1;
  return n <= 32 ? 16 : n <= 64 ? 17 : 18;
}

int SpeculationController::best_k(int b) const {
  int best = 0;
  for (int k = 1; k <= cfg_.num_tokens; ++k)
    if (cells_[b][k].rate > cells_[b][best].rate) best = k;
  return best;
}

int SpeculationController::choose_k(int num_decoding) {
  if (cfg_.mode == SpeculativeMode::kOff || num_decoding <= 0) return 0;
  if (cfg_.mode == SpeculativeMode::kFixed) return cfg_.num_tokens;
  const int b = bucket(num_decoding);
  last_bucket_ = b;
  const uint64_t n = choices_[b]++;
  // First measure every k (the largest first: on one stream it is the likely winner).
  for (int k = cfg_.num_tokens; k >= 0; --k)
    if (cells_[b][k].samples < kTrials) return k;
  const int best = best_k(b);
  if (n % kExplore == kExplore - 1) {  // a neighbour, alternating below and above
    const int up = std::min(best + 1, cfg_.num_tokens), down = std::max(best - 1, 0);
    return (n / kExplore) % 2 == 0 ? down : up;
  }
  return best;
}

void SpeculationController::record_step(int num_decoding, int k, int tokens, double ms) {
  if (cfg_.mode != SpeculativeMode::kAuto || ms <= 0 || k < 0 || k > cfg_.num_tokens) return;
  Cell& c = cells_[bucket(num_decoding)][k];
  const double r = tokens / ms / std::max(num_decoding, 1);
  c.rate = c.samples == 0 ? r : 0.8 * c.rate + 0.2 * r;
  ++c.samples;
}

void SpeculationController::record_verification(int proposed, int accepted) {
  constexpr double kDecay = 0.99;  // about the last hundred verifications
  proposed_ = kDecay * proposed_ + proposed;
  kept_ = kDecay * kept_ + accepted;
}

double SpeculationController::acceptance() const {
  return proposed_ > 0 ? kept_ / proposed_ : 0.0;
}

double SpeculationController::rate(int num_decoding, int k) const {
  if (k < 0 || k > kMaxK) return 0;
  return cells_[bucket(num_decoding)][k].rate;
}

std::string SpeculationController::describe() const {
  std::string s = "acceptance " + std::to_string(acceptance()).substr(0, 5) + ", tokens/ms by k:";
  char buf[32];
  for (int k = 0; k <= cfg_.num_tokens; ++k) {
    std::snprintf(buf, sizeof buf, " %d:%.3f", k, cells_[last_bucket_][k].rate);
    s += buf;
  }
  return s;
}

}  // namespace ktl
