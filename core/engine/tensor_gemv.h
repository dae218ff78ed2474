// The bf16/fp32 GEMV kernels (core/kernels/bf16_gemv.h) on tensors, for PackedLinear: decode-sized
// batches of fp32 activations against bf16 or fp32 weights.
//
// Thread-safety: pure; parallel over output rows (the kernels' hook, at::parallel_for here).
#pragma once

#include <torch/types.h>

#include "core/kernels/bf16_gemv.h"

namespace ktl {

// w [out, in] bf16 contiguous, x [N, in] (1 <= N <= kBf16GemvMaxRows) -> [N, out] fp32.
// Throws std::invalid_argument on other shapes or kernels this CPU cannot run.
torch::Tensor bf16_gemv(const torch::Tensor& w, const torch::Tensor& x,
                        Bf16Kernels kernels = Bf16Kernels::kBest);

// w [out, in] fp32 contiguous, x [N, in] (1 <= N <= kFp32GemvMaxRows) -> [N, out] fp32.
torch::Tensor fp32_gemv(const torch::Tensor& w, const torch::Tensor& x,
                        Bf16Kernels kernels = Bf16Kernels::kBest);

}  // namespace ktl
