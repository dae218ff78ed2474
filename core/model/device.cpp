#include "core/model/device.h"

#include <ATen/Context.h>
#include <torch/cuda.h>

#include <stdexcept>

namespace ktl {

bool mps_available() {
#if defined(__APPLE__)
  return at::hasMPS();
#else
  return false;
#endif
}

torch::Device resolve_device(const std::string& name) {
  if (name == "auto") {
    if (torch::cuda::is_available()) return torch::kCUDA;
    if (mps_available()) return torch::Device(torch::kMPS);
    return torch::kCPU;
  }
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available())
      throw std::invalid_argument("device cuda requested but CUDA is not available");
    return torch::kCUDA;
  }
  if (name == "mps") {
    if (!mps_available())
      throw std::invalid_argument("device mps requested but MPS is not available");
    return torch::Device(torch::kMPS);
  }
  throw std::invalid_argument("unknown device '" + name + "' (expected auto, cpu, cuda or mps)");
}

}  // namespace ktl
