#include "core/engine/step_profile.h"

namespace ktl {

using Clock = std::chrono::steady_clock;

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

const char* to_string(StepPart p) {
  switch (p) {
    case StepPart::kMatmuls:
      return "matmuls";
    case StepPart::kQuantization:
      return "quantization";
    case StepPart::kAttention:
      return "attention";
    case StepPart::kSampling:
      return "sampling";
    case StepPart::kScheduling:
      return "scheduling";
    case StepPart::kCount:
      break;
  }
  return "?";
}

double StepProfile::other_ms() const {
  double parts = 0;
  for (double ms : part_ms) parts += ms;
  return step_ms - parts;
}

void StepProfile::add(const StepProfile& o) {
  steps += o.steps;
  rows += o.rows;
  step_ms += o.step_ms;
  for (int i = 0; i < kStepParts; ++i) part_ms[i] += o.part_ms[i];
}

StepProfileScope::StepProfileScope(StepProfile* p) : p_(p), prev_(detail::step_profile_state) {
  detail::step_profile_state = {p, nullptr};
  if (p_) t0_ = Clock::now();
}

void StepProfileScope::close() {
  if (closed_) return;
  closed_ = true;
  if (p_) {
    p_->step_ms += ms_between(t0_, Clock::now());
    ++p_->steps;
  }
  detail::step_profile_state = prev_;
}

void StepTimer::start(StepPart part) {
  part_ = part;
  parent_ = detail::step_profile_state.open;
  detail::step_profile_state.open = this;
  t0_ = Clock::now();
}

void StepTimer::stop() {
  const double ms = ms_between(t0_, Clock::now());
  p_->part_ms[static_cast<int>(part_)] += ms - nested_ms_;
  if (parent_) parent_->nested_ms_ += ms;
  detail::step_profile_state.open = parent_;
}

}  // namespace ktl
