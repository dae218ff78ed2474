// Where a serving step's wall time goes (`ktl bench --profile`): matmuls, int8 quantization of
// activations, attention, sampling and scheduling, each summed over many steps; "other" is the
// step's wall time minus those parts, so they add up to the whole step.
//
// Cheap when off: the engine thread makes a StepProfile active only while profiling is on
// (StepProfileScope); a StepTimer reads the thread's active profile once and, when there is
// none, takes no clock reading at all. Timers nest and count exclusively: a quantization timer
// inside a matmul timer moves its time out of matmuls, so no time is counted twice.
//
// Timers time the calling thread's wall clock: a kernel that runs on OpenMP workers counts as the
// span its caller waits for it.
//
// Thread-safety: the active profile and open timers are per thread; a StepProfile is a value.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace ktl {

enum class StepPart : int {
  kMatmuls,       // PackedLinear forward (projections and the output head)
  kQuantization,  // int8 quantization of activation rows before the int8 GEMM
  kAttention,     // KV writes and the paged attention kernel
  kSampling,      // logits row to token (penalties, grammar mask, draw, log-probabilities)
  kScheduling,    // scheduler, KV block manager, batch assembly
  kCount
};
constexpr int kStepParts = static_cast<int>(StepPart::kCount);
const char* to_string(StepPart p);  // "matmuls", "quantization", ...

// One step's times, or the sums over many steps.
struct StepProfile {
  int64_t steps = 0;
  int64_t rows = 0;    // batch rows (tokens) over those steps
  double step_ms = 0;  // the steps' wall time
  std::array<double, kStepParts> part_ms{};

  double other_ms() const;  // step_ms minus every part: the rest of the step
  void add(const StepProfile& o);
};

class StepTimer;

namespace detail {
struct StepProfileThreadState {
  StepProfile* profile = nullptr;
  StepTimer* open = nullptr;  // innermost running timer
};
inline thread_local StepProfileThreadState step_profile_state;
}  // namespace detail

// The calling thread's active profile; null when profiling is off.
inline StepProfile* active_step_profile() {
  return detail::step_profile_state.profile;
}

// Makes `p` (null: nothing) the calling thread's active profile and times one step: on close()
// or destruction, one step and its wall time are added to `p` and the previous profile returns.
class StepProfileScope {
 public:
  explicit StepProfileScope(StepProfile* p);
  ~StepProfileScope() { close(); }
  StepProfileScope(const StepProfileScope&) = delete;
  StepProfileScope& operator=(const StepProfileScope&) = delete;
  void close();

 private:
  StepProfile* p_;
  detail::StepProfileThreadState prev_;
  bool closed_ = false;
  std::chrono::steady_clock::time_point t0_;
};

// Adds the wall time of its scope to `part` of the active profile, less that of timers nested
// inside it. Does nothing (no clock reading) when no profile is active.
class StepTimer {
 public:
  explicit StepTimer(StepPart part) : p_(active_step_profile()) {
    if (p_) start(part);
  }
  ~StepTimer() {
    if (p_) stop();
  }
  StepTimer(const StepTimer&) = delete;
  StepTimer& operator=(const StepTimer&) = delete;

 private:
  void start(StepPart part);
  void stop();

  StepProfile* p_;
  StepPart part_ = StepPart::kMatmuls;
  StepTimer* parent_ = nullptr;
  double nested_ms_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace ktl
