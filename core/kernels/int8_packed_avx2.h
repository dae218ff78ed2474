// The AVX2 packed prefill kernel (int8_gemm.h's int8_dot_s32_packed on AVX2-only CPUs: Haswell to
// Comet Lake, AMD Zen 2/3). Internal to core/kernels: int8_gemm.cpp packs the weight blocks and
// calls it.
//
// AVX2 has no vpdpbusd. vpmaddubsw multiplies u8 by s8 and adds pairs into int16 with
// saturation, so the VNNI kernels' u8 activations (q + 128, up to 255) times weights up to 127
// would overflow (2 * 255 * 127 > 32767). This kernel takes the signed activations q instead and
// the sign trick per weight vector: |w| (u8) times sign(w) * q (s8), whose pair sums stay within
// 2 * 128 * 127 = 32512 (|q| <= 127; |w| <= 128), then vpmaddwd by ones to int32. Exact, so
// it agrees bit for bit with the scalar twin; no 128 * sum(w) correction.
//
// Thread-safety: pure function.
#pragma once

#include <cstdint>

namespace ktl {

// Outputs per block and per group of the packed layout the kernel reads.
constexpr int kInt8Avx2PackCols = 64, kInt8Avx2PackGroup = 32;

// c[m * 64 + j] = sum_{i < in} x[m * xld + i] * w[j, i] for m < M (1..6), j < 64, where wp is
// one block of 64 weight rows packed in two groups of 32: [2][ceil(in / 4)][32][4], zero past
// `in`. Reads exactly `in` bytes of each activation row. x86-64 only (the caller checks AVX2).
void int8_packed_avx2(int M, const int8_t* wp, int64_t in, const int8_t* x, int64_t xld,
                      int32_t* c);

}  // namespace ktl
