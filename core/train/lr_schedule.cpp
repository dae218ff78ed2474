#include "core/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace ktl {

double LrSchedule::at(int64_t step) const {
  if (step < warmup_) return peak_ * double(step + 1) / double(warmup_);
  if (step >= max_steps_) return floor_;
  const int64_t span = max_steps_ - warmup_;
  if (span <= 0) return floor_;
  const double progress = double(step - warmup_) / double(span);  // [0, 1)
  return floor_ + 0.5 * (1.0 + std::cos(M_PI * progress)) * (peak_ - floor_);
}

double LrSchedule::at_progress(int64_t step, double progress) const {
  if (step < warmup_) return peak_ * double(step + 1) / double(warmup_);
  progress = std::min(1.0, std::max(0.0, progress));
  return floor_ + 0.5 * (1.0 + std::cos(M_PI * progress)) * (peak_ - floor_);
}

}  // namespace ktl
