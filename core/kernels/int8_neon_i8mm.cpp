// The int8 row tiles on ARM's int8 matrix multiply (FEAT_I8MM: smmla), compiled for ARMv8.6-A in
// a translation unit of its own (the rest of core/kernels targets the baseline) and run only
// where the CPU reports HWCAP2_I8MM (Apple M2 on, Neoverse V1/N2 on).
//
// smmla multiplies a 2 x 8 int8 matrix by an 8 x 2 one into a 2 x 2 int32 block: two activation
// rows' 8 bytes against two weight rows' 8 bytes. A 16-byte step of a row pair is split into its
// two 8-byte halves (zip of the 64-bit lanes), so a 4 x 4 tile is 4 accumulators of 2 x 2 sums
// and 8 smmla per 16 inputs (512 MACs), twice sdot's 16 x 64. Odd row counts pair with zeros.
#include "core/kernels/int8_tiles.h"

#if defined(__aarch64__) && defined(__ARM_FEATURE_MATMUL_INT8)
#include <arm_neon.h>

namespace ktl {

namespace {

// Rows a and b (b null: zeros) as the low and high halves' 2 x 8 matrices.
inline void pair_halves(const int8_t* a, const int8_t* b, int8x16_t& lo, int8x16_t& hi) {
  const int64x2_t va = vreinterpretq_s64_s8(vld1q_s8(a));
  const int64x2_t vb = b ? vreinterpretq_s64_s8(vld1q_s8(b)) : vdupq_n_s64(0);
  lo = vreinterpretq_s8_s64(vzip1q_s64(va, vb));
  hi = vreinterpretq_s8_s64(vzip2q_s64(va, vb));
}

template <int R, int S>
void tile_i8mm(const int8_t* w, int64_t in, const void* xv, int64_t xld, int32_t* out) {
  const int8_t* x = static_cast<const int8_t*>(xv);
  constexpr int RP = (R + 1) / 2, SP = (S + 1) / 2;
  int32x4_t acc[SP][RP];  // lanes: (s0, r0), (s0, r1), (s1, r0), (s1, r1)
  for (int p = 0; p < SP; ++p)
    for (int r = 0; r < RP; ++r) acc[p][r] = vdupq_n_s32(0);
  int64_t i = 0;
  for (; i + 16 <= in; i += 16) {
    int8x16_t wlo[RP], whi[RP];
    for (int r = 0; r < RP; ++r)
      pair_halves(w + 2 * r * in + i, 2 * r + 1 < R ? w + (2 * r + 1) * in + i : nullptr, wlo[r],
                  whi[r]);
    for (int p = 0; p < SP; ++p) {
      int8x16_t xlo, xhi;
      pair_halves(x + 2 * p * xld + i, 2 * p + 1 < S ? x + (2 * p + 1) * xld + i : nullptr, xlo,
                  xhi);
      for (int r = 0; r < RP; ++r) {
        acc[p][r] = vmmlaq_s32(acc[p][r], xlo, wlo[r]);
        acc[p][r] = vmmlaq_s32(acc[p][r], xhi, whi[r]);
      }
    }
  }
  for (int p = 0; p < SP; ++p)
    for (int r = 0; r < RP; ++r) {
      int32_t l[4];
      vst1q_s32(l, acc[p][r]);
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b)
          if (2 * p + a < S && 2 * r + b < R) out[(2 * p + a) * R + 2 * r + b] = l[2 * a + b];
    }
  for (int s = 0; s < S; ++s)  // the inputs past the last 16
    for (int r = 0; r < R; ++r) {
      int32_t t = 0;
      for (int64_t k = i; k < in; ++k) t += int32_t(x[s * xld + k]) * int32_t(w[r * in + k]);
      out[s * R + r] += t;
    }
}

}  // namespace

const Int8TileFns* int8_i8mm_tiles() {
  constexpr int R = kInt8TileRows;
  static const Int8TileFns fns = {
      {{tile_i8mm<R, 1>, tile_i8mm<R, 2>, tile_i8mm<R, 3>, tile_i8mm<R, 4>},
       {tile_i8mm<1, 1>, tile_i8mm<1, 2>, tile_i8mm<1, 3>, tile_i8mm<1, 4>}}};
  return &fns;
}

}  // namespace ktl

#else

namespace ktl {

const Int8TileFns* int8_i8mm_tiles() {
  return nullptr;
}

}  // namespace ktl

#endif
