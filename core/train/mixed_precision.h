// Mixed precision for training: bf16 autocast on CPU (oneDNN's bf16 matmul is ~2.5-3x faster
// than fp32 on AVX512_BF16 CPUs), fp16 autocast with dynamic loss scaling on CUDA. Master
// weights, optimizer state and the loss stay fp32.
// Thread-safety: autocast state is thread-local; AutocastScope affects only its thread.
// GradScaler is owned by one training loop.
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

namespace ktl {

struct TrainingConfig;

enum class Precision { kFp32, kBf16, kFp16 };
const char* precision_name(Precision p);

// Resolves fp16/bf16 ("auto" measures a bf16 and an fp32 matmul on CPU and picks bf16 when it
// is at least 1.3x faster; the trainer instead times real steps, see below). `why` gets one
// human-readable line. Throws std::invalid_argument for combinations the device cannot do (fp16 on
// CPU).
Precision choose_precision(const TrainingConfig& c, const torch::Device& device, std::string* why);

// Step times measured by choose_precision_by_step_time (seconds per step; 0 = not measured).
struct PrecisionTiming {
  double fp32_s = 0;
  double bf16_s = 0;
};

// bf16 "auto" for training: times `step(p)` (one forward + backward on the model's real
// shapes) in fp32 and bf16, `warmup` untimed calls each, then `reps` timed calls each,
// interleaved so a load change hits both; takes the median of each. Picks bf16 only when its
// median step is at least 10% shorter (bf16 costs precision, so a tie goes to fp32). `why`
// gets one line with both times; `timing` gets them too.
Precision choose_precision_by_step_time(const std::function<void(Precision)>& step, int warmup,
                                        int reps, std::string* why, PrecisionTiming* timing);

// GFLOP/s of an n x n x n matmul in `dtype` on `device` (best of a few repetitions).
double measure_matmul_gflops(torch::ScalarType dtype, int64_t n = 512, int reps = 6,
                             const torch::Device& device = torch::kCPU);

// Enables autocast for `p` on `device` for its lifetime (no-op for fp32); on exit restores the
// previous state and clears autocast's weight-cast cache (stale after an optimizer step).
class AutocastScope {
 public:
  AutocastScope(Precision p, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false, cpu_ = false, prev_enabled_ = false;
  torch::ScalarType prev_dtype_ = torch::kFloat32;
};

// Dynamic loss scaling for fp16: multiply the loss by scale(), then unscale_and_check() the
// gradients before clipping; update() halves the scale after an overflow (the step is skipped)
// and doubles it after `growth_interval` clean steps.
class GradScaler {
 public:
  explicit GradScaler(bool enabled, double init_scale = 65536.0, int growth_interval = 2000)
      : enabled_(enabled), scale_(init_scale), growth_interval_(growth_interval) {}
  bool enabled() const { return enabled_; }
  double scale() const { return enabled_ ? scale_ : 1.0; }
  // Divides grads by the scale; returns false when any gradient is inf/nan.
  bool unscale_and_check(const std::vector<torch::Tensor>& params);
  void update(bool found_inf);
  void set_state(double scale, int good_steps) { scale_ = scale, good_steps_ = good_steps; }
  int good_steps() const { return good_steps_; }

 private:
  bool enabled_;
  double scale_;
  int growth_interval_;
  int good_steps_ = 0;
};

}  // namespace ktl
