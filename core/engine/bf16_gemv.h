// bf16-weight GEMV for decode-sized batches: y[n, o] = sum_i w[o, i] * x[n, i], with w in bf16
// (half of fp32's bytes to stream) and x, y in fp32. Each bf16 weight is widened to fp32 in
// registers (a 16-bit shift, exact), so activations keep full precision; oneDNN's bf16 matmul
// would round them to bf16 and, at one row, ran slower than the fp32 GEMV.
//
// The same kernels run fp32 weights for small batches (fp32_gemv): OpenBLAS's sgemm repacks the
// whole weight matrix on every call, which at 16 rows cost as much as the multiply (perf:
// sgemm_incopy 29 %, sgemm_kernel 24 % of 16-stream fp32 decode).
//
// AVX-512 and AVX2 kernels are picked at run time (a scalar loop elsewhere, also the twin in
// the tests). Thread-safety: pure; parallel over output rows (at::parallel_for).
#pragma once

#include <torch/types.h>

namespace ktl {

// Measured on model_small (Intel Xeon, 2 threads, aggregate tok/s): with the 4 x 4 tiles, 8 rows
// 335 vs oneDNN's 295-301; 16 rows 353-360 vs 385-413. (One row at a time, it was 6 rows 16 ms
// vs oneDNN 18 ms per step, 8 rows 22 vs 20 ms, on an AMD EPYC.)
constexpr int64_t kBf16GemvMaxRows = 8;  // above this, oneDNN's bf16 GEMM wins

// kBest: the widest this CPU runs; the others to test each kernel (kScalar is the naive twin).
enum class Bf16Kernels { kBest, kAvx512, kAvx2, kScalar };
bool bf16_kernels_supported(Bf16Kernels k);

// w [out, in] bf16 contiguous, x [N, in] (1 <= N <= kBf16GemvMaxRows) -> [N, out] fp32.
// Throws std::invalid_argument on other shapes or kernels this CPU cannot run.
torch::Tensor bf16_gemv(const torch::Tensor& w, const torch::Tensor& x,
                        Bf16Kernels kernels = Bf16Kernels::kBest);

// Above this many rows (prefill) BLAS's packed GEMM wins; at 2-16 rows it loses to these.
constexpr int64_t kFp32GemvMaxRows = 16;

// w [out, in] fp32 contiguous, x [N, in] (1 <= N <= kFp32GemvMaxRows) -> [N, out] fp32.
torch::Tensor fp32_gemv(const torch::Tensor& w, const torch::Tensor& x,
                        Bf16Kernels kernels = Bf16Kernels::kBest);

}  // namespace ktl
