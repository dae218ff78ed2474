// The int8 row tiles shared between core/kernels' translation units: int8_gemm.cpp dispatches,
// and kernels that need other compiler flags (int8_neon_i8mm.cpp, built for ARMv8.6-A) live in
// files of their own and hand their tiles over here. Internal to core/kernels.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

namespace ktl {

constexpr int kInt8TileRows = 4;     // weight rows per tile
constexpr int kInt8TileStreams = 4;  // activation rows per tile

// A tile: out[s * R + r] = sum_i x[s, i] * w[r, i] for r < R, s < S; w rows `in` apart, x rows
// xld apart (u8 for the VNNI kernels, s8 otherwise). Exact int32 sums.
using Int8TileFn = void (*)(const int8_t* w, int64_t in, const void* x, int64_t xld, int32_t* out);

// tiles[R == kInt8TileRows ? 0 : 1][S - 1]: full tiles and the single-row remainder.
struct Int8TileFns {
  Int8TileFn tiles[2][kInt8TileStreams];
};

// The i8mm (smmla) tiles, signed activations; null when this build has no i8mm code (any target
// but aarch64 with a compiler that knows ARMv8.6-A). The CPU's HWCAP2_I8MM is checked apart.
const Int8TileFns* int8_i8mm_tiles();

}  // namespace ktl
