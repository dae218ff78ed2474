// Int8 weights x int8 activations for decode and small batches: y[n, o] = sx[n] * sw[o] *
// sum_i xq[n, i] * w[o, i], where w is int8 with one scale per output row (PackedLinear's int8
// form) and x is quantized per row on the fly (symmetric, xq in [-127, 127]).
//
// Kernels (picked at run time from cpuid, each compiled with a per-function target attribute so
// the binary still runs on CPUs without them):
//  - kAvx512Vnni: vpdpbusd on 64 bytes. It multiplies u8 by s8, so activations are shifted to
//    u8 (xq + 128) and 128 * sum_i w[o, i] (precomputed per weight row) is subtracted after.
//  - kAvxVnni:    the same on 32 bytes (VEX vpdpbusd; Alder Lake, Zen 5).
//  - kAvx2:       vpmaddubsw/vpmaddwd with the sign trick (|w| as u8 times sign(w) * xq as s8,
//    which cannot saturate since |xq|, |w| <= 127 and 2 * 127 * 128 < 32768).
//  - kNeonI8mm:   smmla (ARMv8.6-A int8 matrix multiply) on 2 x 8 by 8 x 2 blocks
//    (int8_neon_i8mm.cpp, a translation unit built for ARMv8.6-A; HWCAP2_I8MM at run time).
//  - kNeonDot:    sdot on AArch64 where the compiler targets dotprod (HWCAP_ASIMDDP at run time).
//    Both ARM kernels run under qemu in the kernels_aarch64_qemu test (tests/kernels/aarch64/).
//  - kScalar:     the portable loop, also the naive twin of the tests.
// Every kernel returns the exact int32 sums, so they agree bit for bit.
//
// Each weight row block is read once for all activation rows: the kernels walk tiles of
// 4 weight rows x up to 4 activation rows, all activation tiles in turn over the same (cached)
// weight rows, so a batched decode step streams the weights from memory once.
//
// Thread-safety: pure functions; int8_gemm() and the quantizer run parallel over rows through the
// kernels' parallel_for hook (core/kernels/parallel.h: serial unless installed).
#pragma once

#include <cstdint>
#include <vector>

namespace ktl {

// Above this many rows the quantized engine (oneDNN) wins (measured on model_small, see
// docs/inference-guide.md).
constexpr int64_t kInt8GemmMaxRows = 64;

// kBest: the widest this CPU runs; the others to test each kernel (kScalar is the naive twin).
enum class Int8Kernels { kBest, kAvx512Vnni, kAvxVnni, kAvx2, kNeonI8mm, kNeonDot, kScalar };
bool int8_kernels_supported(Int8Kernels k);
Int8Kernels best_int8_kernels();  // never kBest
const char* to_string(Int8Kernels k);

// Activation rows quantized per row: q[n, i] = round(x[n, i] / scale[n]), scale = max|x| / 127
// (1 for an all-zero row). Without with_signed, q is left empty (the VNNI kernels read u only).
struct Int8Rows {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> q;     // [rows, cols]
  std::vector<uint8_t> u;    // [rows, cols] q + 128 for the u8 x s8 (VNNI) kernels, + 3 bytes
  std::vector<float> scale;  // [rows]
};
// simd = false: the portable loops only (the twin of the AVX-512, AVX2 and NEON quantizers).
Int8Rows quantize_rows_int8(const float* x, int64_t rows, int64_t cols, bool with_signed = true,
                            bool simd = true);

// The quantizer simd = true runs here: "avx512", "avx2", "neon" or "portable".
const char* int8_quantizer();

// sum_i w[o, i] for every row of w [out, in] (the correction of the u8 shift).
std::vector<int32_t> int8_row_sums(const int8_t* w, int64_t out, int64_t in);

// Exact int32 dot products acc[n * ld + o] = sum_i x.q[n, i] * w[o, i], for o in [o0, o1).
// w [out, in] row-major, wsum from int8_row_sums. k must be supported (not kBest).
void int8_dot_s32(Int8Kernels k, const int8_t* w, const int32_t* wsum, int64_t in, int64_t o0,
                  int64_t o1, const Int8Rows& x, int32_t* acc, int64_t ld);

// The same sums for prefill-sized batches: each block of 64 weight rows is repacked on the fly
// (a thread-local buffer of 64 x in bytes; no second copy of the weights is kept) into the VNNI
// layout, and a micro-kernel of 6 activation rows x 64 outputs accumulates outer products of
// broadcast activations, with no horizontal sums. Supported for kAvx512Vnni, kAvxVnni (passes of
// 2 rows x 32 outputs over 24 KB slices of the block), kAvx2 (the same passes with the sign trick
// on the signed activations x.q: int8_packed_avx2.h) and kScalar (the twin of the packing);
// int8_gemm() uses it from kInt8PackedMinRows rows.
constexpr int64_t kInt8PackedMinRows = 96;
bool int8_packed_supported(Int8Kernels k);
void int8_dot_s32_packed(Int8Kernels k, const int8_t* w, const int32_t* wsum, int64_t in,
                         int64_t o0, int64_t o1, const Int8Rows& x, int32_t* acc, int64_t ld);

// y [n, out] = dequantized int8 GEMM of x [n, in] (fp32) with w [out, in] int8, scales [out]:
// quantize_rows_int8 (the signed copy only where int8_gemm_needs_signed), then
// int8_gemm_quantized. Parallel over blocks of output rows. (The engine times the quantization
// apart and calls the two halves itself.)
void int8_gemm(const int8_t* w, const float* w_scale, const int32_t* wsum, int64_t out, int64_t in,
               const float* x, int64_t n, float* y, Int8Kernels k = Int8Kernels::kBest);
// Whether int8_gemm of n rows takes the packed prefill kernels, and whether its row tiles read
// the signed activations (without them, only the u8 form is quantized).
bool int8_gemm_packed(Int8Kernels k, int64_t n);
bool int8_gemm_needs_signed(Int8Kernels k, int64_t n);
// The same from activations already quantized (xq.rows rows of width in): y [xq.rows, out].
void int8_gemm_quantized(const int8_t* w, const float* w_scale, const int32_t* wsum, int64_t out,
                         int64_t in, const Int8Rows& xq, float* y,
                         Int8Kernels k = Int8Kernels::kBest);

}  // namespace ktl
