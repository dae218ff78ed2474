// bf16-weight GEMV for decode-sized batches: y[n, o] = sum_i w[o, i] * x[n, i], with w in bf16
// (half of fp32's bytes to stream) and x, y in fp32. Each bf16 weight is widened to fp32 in
// registers (a 16-bit shift, exact), so activations keep full precision; oneDNN's bf16 matmul
// would round them to bf16 and, at one row, ran slower than the fp32 GEMV.
//
// The same kernels run fp32 weights for small batches (fp32_gemv): OpenBLAS's sgemm repacks the
// whole weight matrix on every call, which at 16 rows cost as much as the multiply (perf:
// sgemm_incopy 29 %, sgemm_kernel 24 % of 16-stream fp32 decode).
//
// Kernels picked at run time: AVX-512 and AVX2 (x86), NEON (AArch64, where it is baseline), and
// a scalar loop elsewhere, also the twin in the tests. Raw pointers, no LibTorch: the engine's
// tensor wrappers are core/engine/tensor_gemv.h.
//
// Thread-safety: pure; parallel over output rows through the kernels' parallel_for hook
// (core/kernels/parallel.h).
#pragma once

#include <cstdint>

namespace ktl {

// Measured on model_small (Intel Xeon, 2 threads, aggregate tok/s): with the 4 x 4 tiles, 8 rows
// 335 vs oneDNN's 295-301; 16 rows 353-360 vs 385-413. (One row at a time, it was 6 rows 16 ms
// vs oneDNN 18 ms per step, 8 rows 22 vs 20 ms, on an AMD EPYC.)
constexpr int64_t kBf16GemvMaxRows = 8;  // above this, oneDNN's bf16 GEMM wins
// Above this many rows (prefill) BLAS's packed GEMM wins; at 2-16 rows it loses to these.
constexpr int64_t kFp32GemvMaxRows = 16;

// kBest: the widest this CPU runs; the others to test each kernel (kScalar is the naive twin).
enum class Bf16Kernels { kBest, kAvx512, kAvx2, kNeon, kScalar };
bool bf16_kernels_supported(Bf16Kernels k);
Bf16Kernels best_bf16_kernels();  // never kBest
const char* to_string(Bf16Kernels k);

// y [n, out] = x [n, in] w [out, in]^T; w bf16 (the upper 16 bits of an fp32), row-major. Any
// n >= 0 (in calls of up to 8 rows over each weight row). Throws std::invalid_argument for
// kernels this CPU cannot run.
void bf16_gemv(const uint16_t* w, int64_t out, int64_t in, const float* x, int64_t n, float* y,
               Bf16Kernels kernels = Bf16Kernels::kBest);
// The same with fp32 weights.
void fp32_gemv(const float* w, int64_t out, int64_t in, const float* x, int64_t n, float* y,
               Bf16Kernels kernels = Bf16Kernels::kBest);

}  // namespace ktl
