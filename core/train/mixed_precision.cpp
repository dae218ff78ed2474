#include "core/train/mixed_precision.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "core/train/training_config.h"

namespace ktl {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kBf16:
      return "bf16";
    case Precision::kFp16:
      return "fp16";
  }
  return "?";
}

double measure_matmul_gflops(torch::ScalarType dtype, int64_t n, int reps,
                             const torch::Device& device) {
  torch::NoGradGuard no_grad;
  auto a = torch::randn({n, n}).to(device, dtype);
  auto b = torch::randn({n, n}).to(device, dtype);
  auto c = torch::matmul(a, b);  // warm-up (oneDNN primitive creation, cuBLAS handles)
  // A GPU queues work: reading one element back waits for the matmul to finish.
  auto sync = [&] {
    if (!device.is_cpu()) (void)c.view(-1)[0].item<float>();
  };
  sync();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    c = torch::matmul(a, b);
    sync();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
  }
  return 2.0 * double(n) * n * n / best / 1e9;
}

Precision choose_precision_by_step_time(const std::function<void(Precision)>& step, int warmup,
                                        int reps, std::string* why, PrecisionTiming* timing) {
  if (reps < 1) throw std::invalid_argument("choose_precision_by_step_time: reps must be >= 1");
  for (int i = 0; i < warmup; ++i) step(Precision::kFp32), step(Precision::kBf16);
  std::vector<double> f32, b16;
  auto timed = [&](Precision p, std::vector<double>& out) {
    const auto t0 = std::chrono::steady_clock::now();
    step(p);
    out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
  for (int i = 0; i < reps; ++i) {
    // Alternate which goes first so a slow start or a burst of load does not favour one.
    if (i % 2 == 0)
      timed(Precision::kFp32, f32), timed(Precision::kBf16, b16);
    else
      timed(Precision::kBf16, b16), timed(Precision::kFp32, f32);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  };
  PrecisionTiming t{median(f32), median(b16)};
  if (timing) *timing = t;
  const bool use_bf16 = t.bf16_s <= 0.9 * t.fp32_s;
  char buf[256];
  std::snprintf(
      buf, sizeof buf,
      "%s (bf16: auto; measured forward+backward on the model's shapes, median of %d: "
      "fp32 %.3f s/step, bf16 %.3f s/step; bf16 %s)",
      use_bf16 ? "bf16 autocast" : "fp32", reps, t.fp32_s, t.bf16_s,
      use_bf16 ? "is >= 10% faster" : "is not >= 10% faster, so fp32 keeps full precision");
  if (why) *why = buf;
  return use_bf16 ? Precision::kBf16 : Precision::kFp32;
}

Precision choose_precision(const TrainingConfig& c, const torch::Device& device, std::string* why) {
  auto say = [&](const std::string& s) {
    if (why) *why = s;
  };
  if (c.fp16) {
    if (device.is_cpu())
      throw std::invalid_argument("fp16 training needs cuda or mps; on CPU use bf16 (auto)");
#if TORCH_VERSION_MAJOR < 2
    if (device.is_mps()) {
      say("fp16 autocast on MPS needs LibTorch >= 2.0; training in fp32");
      return Precision::kFp32;
    }
#endif
    say("fp16 autocast with dynamic loss scaling");
    return Precision::kFp16;
  }
  if (c.bf16 == "false") {
    say("fp32 (bf16: false)");
    return Precision::kFp32;
  }
  if (c.bf16 == "true") {
    if (device.is_mps()) throw std::invalid_argument("bf16 autocast is not supported on mps");
    say("bf16 autocast (bf16: true)");
    return Precision::kBf16;
  }
  if (device.is_mps()) {
    say("fp32 (bf16: auto; bf16 autocast is not supported on mps)");
    return Precision::kFp32;
  }
  // CPU and CUDA alike: bf16 when this device multiplies bf16 clearly faster than fp32 (a GPU
  // with bf16 tensor cores, Ampere or newer; a CPU with AVX512_BF16/AMX). Untested on CUDA here.
  double f32 = 0, b16 = 0;
  const int64_t n = device.is_cpu() ? 512 : 2048;
  try {
    f32 = measure_matmul_gflops(torch::kFloat32, n, 6, device);
    b16 = measure_matmul_gflops(torch::kBFloat16, n, 6, device);
  } catch (const std::exception&) {
    b16 = 0;
  }
  char buf[200];
  const bool use = b16 >= 1.3 * f32;
  std::snprintf(buf, sizeof buf, "%s (bf16: auto; %s matmul fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s)",
                use ? "bf16 autocast" : "fp32", device.str().c_str(), f32, b16);
  say(buf);
  return use ? Precision::kBf16 : Precision::kFp32;
}

AutocastScope::AutocastScope(Precision p, const torch::Device& device) {
  if (p == Precision::kFp32) return;
  active_ = true;
  cpu_ = device.is_cpu();
  const auto dtype = p == Precision::kBf16 ? torch::kBFloat16 : torch::kHalf;
  at::autocast::increment_nesting();
  if (cpu_) {
    prev_enabled_ = at::autocast::is_cpu_enabled();
    prev_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    prev_enabled_ = at::autocast::is_enabled();
    prev_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cpu_) {
    at::autocast::set_cpu_enabled(prev_enabled_);
    at::autocast::set_autocast_cpu_dtype(prev_dtype_);
  } else {
    at::autocast::set_enabled(prev_enabled_);
    at::autocast::set_autocast_gpu_dtype(prev_dtype_);
  }
}

bool GradScaler::unscale_and_check(const std::vector<torch::Tensor>& params) {
  if (!enabled_) return true;
  torch::NoGradGuard no_grad;
  bool finite = true;
  for (const auto& p : params) {
    auto g = p.grad();
    if (!g.defined()) continue;
    g.mul_(1.0 / scale_);
    if (finite && !torch::isfinite(g).all().item<bool>()) finite = false;
  }
  return finite;
}

void GradScaler::update(bool found_inf) {
  if (!enabled_) return;
  if (found_inf) {
    scale_ = std::max(1.0, scale_ * 0.5);
    good_steps_ = 0;
  } else if (++good_steps_ >= growth_interval_) {
    scale_ *= 2.0;
    good_steps_ = 0;
  }
}

}  // namespace ktl
