// The small per-row operations of a transformer step, each one pass over raw fp32 rows: RMSNorm,
// and RoPE in place on the fused q/k projection. The engine's CPU path runs them instead of
// the LibTorch compositions in core/model/ops.h (RMSNorm was 6 ops, RoPE 5 per tensor), whose
// dispatch and allocations cost ~0.8 ms of a ~4 ms int8 1-stream decode step on model_small;
// the training model keeps the LibTorch ops (autograd). (SwiGLU stays LibTorch's: its
// vectorised exp beat a plain loop at 16 rows.) Same arithmetic in fp32, so results
// agree with those ops to rounding (tests/kernels/decode_ops_test.cpp checks a double twin).
//
// Thread-safety: pure apart from writing their outputs; serial (a step's rows are few and short).
#pragma once

#include <cstdint>

namespace ktl {

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w, for r < rows; x, y [rows, d] (may alias).
void rms_norm_rows(const float* x, const float* w, int64_t rows, int64_t d, float eps, float* y);

// RoPE in place on the first `heads` heads of each row of `x` [rows, row_stride] (each head Dh
// contiguous; the rotate-half convention of core/model/ops.h):
//   x1' = x1 * cos - x2 * sin, x2' = x2 * cos + x1 * sin  (x1, x2: the halves of a head)
// cos, sin: [rows, Dh] (both halves equal, as rope_cos_sin() returns them).
void rope_rows_inplace(float* x, int64_t rows, int64_t row_stride, int64_t heads, int64_t dh,
                       const float* cos, const float* sin);

}  // namespace ktl
