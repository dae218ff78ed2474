#include "core/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace ktl {

double LrSchedule::at(int64_t step) const {
  const int64_t span = max_steps_ - warmup_;
  // The step's share of the steps after warmup; at or past max_steps (or no span): the floor.
  const double progress = span > 0 ? double(step - warmup_) / double(span) : 1.0;
  return at_progress(step, progress);
}

double LrSchedule::at_progress(int64_t step, double progress) const {
  if (step < warmup_) return peak_ * double(step + 1) / double(warmup_);
  progress = std::min(1.0, std::max(0.0, progress));
  return floor_ + 0.5 * (1.0 + std::cos(M_PI * progress)) * (peak_ - floor_);
}

}  // namespace ktl
