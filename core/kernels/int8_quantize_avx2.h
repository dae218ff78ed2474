// The activation quantizer's AVX2 loops (int8_gemm.h's quantize_rows_int8 on AVX2-only CPUs),
// bit for bit the portable loops: the same fp32 multiply and clamp, and vcvtps2dq rounds to
// nearest even as their magic-number trick does. Internal to core/kernels.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

namespace ktl {

// max |x[i]| over i < n (exact: max does not round).
float int8_abs_max_avx2(const float* x, int64_t n);

// q[i] = round(clamp(x[i] * inv, -127, 127)) (q may be null), u[i] = q[i] + 128, for
// i < n - n % 8; returns that count (the caller's portable loop does the rest).
int64_t int8_quantize_avx2(const float* x, int64_t n, float inv, int8_t* q, uint8_t* u);

}  // namespace ktl
