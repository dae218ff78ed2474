// Learning-rate schedule: linear warmup from 0 to the peak, then cosine decay to a floor at
// max_steps (and the floor after it). Pure function of the step, so a resumed run gets exactly
// the learning rate it would have had. Thread-safe (immutable).
#pragma once

#include <cstdint>

namespace ktl {

class LrSchedule {
 public:
  LrSchedule(double peak, double floor, int64_t warmup_steps, int64_t max_steps)
      : peak_(peak), floor_(floor), warmup_(warmup_steps), max_steps_(max_steps) {}
  // Learning rate for the optimizer step with 0-based index `step` (the (step+1)-th update).
  double at(int64_t step) const;
  // The same warmup (by step), then the cosine at `progress` in [0, 1] (clamped) instead of the
  // step's share of max_steps: for a time budget, progress = time used / budget.
  double at_progress(int64_t step, double progress) const;

 private:
  double peak_, floor_;
  int64_t warmup_, max_steps_;
};

}  // namespace ktl
