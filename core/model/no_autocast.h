// Autocast's state for a device, and a guard that switches it off: ops with a custom backward
// (which runs without autocast) cast explicitly, so forward and backward compute the same thing.
// Thread-safety: autocast state is thread-local; so is the guard's effect.
#pragma once

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/types.h>

namespace ktl {

// Whether autocast is on for tensors on `device` (CPU or CUDA).
inline bool autocast_enabled(const torch::Device& device) {
  return device.is_cuda() ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}

// The dtype autocast runs a matmul on `device` in, or `otherwise` when autocast is off there.
inline torch::ScalarType autocast_dtype(const torch::Device& device, torch::ScalarType otherwise) {
  if (!autocast_enabled(device)) return otherwise;
  return device.is_cuda() ? at::autocast::get_autocast_gpu_dtype()
                          : at::autocast::get_autocast_cpu_dtype();
}

// While one lives, autocast leaves this thread's ops alone.
struct NoAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{
      c10::DispatchKeySet({c10::DispatchKey::AutocastCPU, c10::DispatchKey::AutocastCUDA})};
};

}  // namespace ktl
