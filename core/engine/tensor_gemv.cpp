#include "core/engine/tensor_gemv.h"

#include <torch/torch.h>

#include <stdexcept>
#include <string>

#include "core/engine/kernel_threads.h"

namespace ktl {

namespace {

// w [out, in] of `dtype`, contiguous; x [1..max_rows, in]; kernels this CPU runs.
void check_gemv_args(const char* name, const torch::Tensor& w, torch::ScalarType dtype,
                     const torch::Tensor& x, int64_t max_rows, Bf16Kernels kernels) {
  if (w.scalar_type() != dtype || !w.is_contiguous() || w.dim() != 2 || x.dim() != 2 ||
      x.size(1) != w.size(1) || x.size(0) < 1 || x.size(0) > max_rows ||
      !bf16_kernels_supported(kernels)) {
    throw std::invalid_argument(std::string(name) + ": need " + c10::toString(dtype) +
                                " [out, in] weights, 1.." + std::to_string(max_rows) +
                                " rows of [in], and kernels this CPU runs");
  }
}

}  // namespace

torch::Tensor bf16_gemv(const torch::Tensor& w, const torch::Tensor& x, Bf16Kernels kernels) {
  check_gemv_args("bf16_gemv", w, torch::kBFloat16, x, kBf16GemvMaxRows, kernels);
  install_kernel_parallel_for();
  auto xc = x.to(torch::kFloat32).contiguous();                  // [N, in]
  auto y = torch::empty({xc.size(0), w.size(0)}, xc.options());  // [N, out]
  const auto* wp = reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>());
  bf16_gemv(wp, w.size(0), w.size(1), xc.data_ptr<float>(), xc.size(0), y.data_ptr<float>(),
            kernels);
  return y;
}

torch::Tensor fp32_gemv(const torch::Tensor& w, const torch::Tensor& x, Bf16Kernels kernels) {
  check_gemv_args("fp32_gemv", w, torch::kFloat32, x, kFp32GemvMaxRows, kernels);
  install_kernel_parallel_for();
  auto xc = x.to(torch::kFloat32).contiguous();                  // [N, in]
  auto y = torch::empty({xc.size(0), w.size(0)}, xc.options());  // [N, out]
  fp32_gemv(w.data_ptr<float>(), w.size(0), w.size(1), xc.data_ptr<float>(), xc.size(0),
            y.data_ptr<float>(), kernels);
  return y;
}

}  // namespace ktl
