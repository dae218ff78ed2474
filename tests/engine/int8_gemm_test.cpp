// The int8 x int8 kernels against their naive twin (exact int32 sums), the dequantized GEMM
// against fp32, and the engine's int8 path against the previous weight-only path.
#include "core/engine/int8_gemm.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "core/engine/engine_model.h"
#include "core/engine/packed_linear.h"
#include "core/model/model.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

std::vector<int8_t> random_int8(int64_t n, uint64_t seed) {
  std::mt19937 rng(seed);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);  // incl. -128
  return v;
}

std::vector<float> random_floats(int64_t n, uint64_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The naive twin: the plain triple loop, sums[n * out + o] = sum_i x.q[n, i] * w[o, i].
std::vector<int32_t> naive_s32(const Int8Rows& x, const std::vector<int8_t>& w, int64_t out) {
  const int64_t rows = x.rows, in = x.cols;
  std::vector<int32_t> twin(rows * out);
  for (int64_t n = 0; n < rows; ++n)
    for (int64_t o = 0; o < out; ++o) {
      int32_t t = 0;
      for (int64_t i = 0; i < in; ++i) t += int32_t(x.q[n * in + i]) * int32_t(w[o * in + i]);
      twin[n * out + o] = t;
    }
  return twin;
}

const Int8Kernels kAll[] = {Int8Kernels::kAvx512Vnni, Int8Kernels::kAvxVnni, Int8Kernels::kAvx2,
                            Int8Kernels::kNeonDot, Int8Kernels::kScalar};

TEST(Int8Gemm, EveryKernelEqualsTheScalarTwinExactlyOverOddSizes) {
  int tested = 0;
  for (int64_t in : {1, 7, 31, 32, 63, 64, 65, 100, 129, 200}) {
    for (int64_t out : {1, 3, 4, 5, 13}) {
      const auto w = random_int8(out * in, in * 31 + out);
      const auto sums = int8_row_sums(w.data(), out, in);
      for (int64_t rows : {1, 2, 3, 4, 5, 7, 9}) {
        const auto xf = random_floats(rows * in, rows + in);
        const Int8Rows x = quantize_rows_int8(xf.data(), rows, in);
        const std::vector<int32_t> twin = naive_s32(x, w, out);
        for (Int8Kernels k : kAll) {
          if (!int8_kernels_supported(k)) continue;
          std::vector<int32_t> got(rows * out, 12345);
          // Two ranges, as parallel_for would split them.
          const int64_t mid = out / 2;
          int8_dot_s32(k, w.data(), sums.data(), in, 0, mid, x, got.data(), out);
          int8_dot_s32(k, w.data(), sums.data(), in, mid, out, x, got.data(), out);
          ASSERT_EQ(got, twin) << to_string(k) << " in " << in << " out " << out << " rows "
                               << rows;
          ++tested;
        }
      }
    }
  }
  EXPECT_GT(tested, 0);
  EXPECT_NE(best_int8_kernels(), Int8Kernels::kBest);
}

// The prefill path (weight blocks repacked into the VNNI layout, outer-product micro-kernel)
// against the same naive twin: ragged inputs (not a multiple of 4), output ranges that start and
// end inside a 64-row block, row counts around the 6-row micro-kernel.
TEST(Int8Gemm, PackedPrefillKernelsEqualTheScalarTwinExactly) {
  int tested = 0;
  for (int64_t in : {1, 3, 4, 5, 63, 64, 130}) {
    for (int64_t out : {1, 63, 64, 65, 150}) {
      const auto w = random_int8(out * in, in * 17 + out);
      const auto sums = int8_row_sums(w.data(), out, in);
      for (int64_t rows : {1, 5, 6, 7, 13, 40}) {
        const auto xf = random_floats(rows * in, rows * 3 + in);
        const Int8Rows x = quantize_rows_int8(xf.data(), rows, in);
        const std::vector<int32_t> twin = naive_s32(x, w, out);
        for (Int8Kernels k : kAll) {
          if (!int8_packed_supported(k)) continue;
          std::vector<int32_t> got(rows * out, 12345);
          const int64_t mid = out / 3;
          int8_dot_s32_packed(k, w.data(), sums.data(), in, 0, mid, x, got.data(), out);
          int8_dot_s32_packed(k, w.data(), sums.data(), in, mid, out, x, got.data(), out);
          ASSERT_EQ(got, twin) << to_string(k) << " in " << in << " out " << out << " rows "
                               << rows;
          ++tested;
        }
      }
    }
  }
  EXPECT_GT(tested, 0);
  EXPECT_TRUE(int8_packed_supported(Int8Kernels::kScalar));
}

TEST(Int8Gemm, QuantizeRowsRoundsWithinHalfAStep) {
  const auto xf = random_floats(3 * 50, 9);
  std::vector<float> with_zero(xf);
  std::fill(with_zero.begin() + 50, with_zero.begin() + 100, 0.0f);  // row 1 all zero
  const Int8Rows x = quantize_rows_int8(with_zero.data(), 3, 50);
  EXPECT_EQ(x.scale[1], 1.0f);
  for (int64_t n = 0; n < 3; ++n) {
    int amax = 0;
    for (int64_t i = 0; i < 50; ++i) {
      const int8_t q = x.q[n * 50 + i];
      EXPECT_EQ(int(x.u[n * 50 + i]), int(q) + 128);
      EXPECT_LE(std::abs(q * x.scale[n] - with_zero[n * 50 + i]), x.scale[n] * 0.5f + 1e-6f);
      amax = std::max(amax, std::abs(int(q)));
    }
    EXPECT_EQ(amax, n == 1 ? 0 : 127);
  }
}

// The vector quantizer (AVX-512 where the CPU has it) against the portable loops, bit for bit:
// lengths around the 16-float vector, an all-zero row, values that round to exact halves.
TEST(Int8Gemm, SimdQuantizerEqualsThePortableOneExactly) {
  for (int64_t cols : {1, 15, 16, 17, 33, 130, 768}) {
    auto xf = random_floats(4 * cols, cols);
    std::fill(xf.begin() + cols, xf.begin() + 2 * cols, 0.0f);  // row 1: zeros
    for (int64_t i = 0; i < cols; ++i) xf[2 * cols + i] = 0.5f * static_cast<float>(i % 9 - 4);
    for (bool with_signed : {true, false}) {
      const Int8Rows a = quantize_rows_int8(xf.data(), 4, cols, with_signed, /*simd=*/true);
      const Int8Rows b = quantize_rows_int8(xf.data(), 4, cols, with_signed, /*simd=*/false);
      EXPECT_EQ(a.q, b.q) << cols;
      EXPECT_EQ(a.u, b.u) << cols;
      EXPECT_EQ(a.scale, b.scale) << cols;
      EXPECT_EQ(a.q.size(), with_signed ? size_t(4 * cols) : size_t(0));
    }
  }
}

TEST(Int8Gemm, DequantizedGemmEqualsTwinAndIsCloseToFp32) {
  torch::manual_seed(7);
  auto w = torch::randn({77, 130}) * 0.05;  // 130: tails in every kernel
  auto l = PackedLinear::from_float(w, WeightDtype::kInt8);
  for (int64_t rows : {1, 5, 16, 33, 200}) {  // 200: prefill-sized (KTL_INT8_PREFILL=gemm)
    auto x = torch::randn({rows, 130});
    // Twin: activations quantized the same way, then the dequantized fp32 product.
    auto xq = quantize_rows_int8(x.data_ptr<float>(), rows, 130);
    auto xd = torch::from_blob(xq.q.data(), {rows, 130}, torch::kInt8).to(torch::kFloat32) *
              torch::from_blob(xq.scale.data(), {rows}, torch::kFloat32).unsqueeze(1);
    auto twin = at::linear(xd, l.dequantized());  // [rows, 77]
    for (Int8Kernels k : kAll) {
      if (!int8_kernels_supported(k)) continue;
      auto got = l.forward_int8_gemm(x, k);
      ASSERT_EQ(got.sizes(), twin.sizes());
      EXPECT_TRUE(torch::allclose(got, twin, 1e-4, 1e-4)) << to_string(k) << " rows " << rows;
    }
    auto fp32 = at::linear(x, w);
    EXPECT_LT(((l.forward_int8_gemm(x) - fp32).norm() / fp32.norm()).item<double>(), 0.02);
  }
}

TEST(Int8Gemm, PackedLinearRunsItUpToTheRowLimitAndTheSwitchRestoresWeightOnly) {
  torch::manual_seed(8);
  auto l = PackedLinear::from_float(torch::randn({40, 96}) * 0.05, WeightDtype::kInt8);
  for (int64_t rows : {int64_t{1}, int64_t{8}, kInt8GemmMaxRows}) {
    auto x = torch::randn({rows, 96});
    EXPECT_TRUE(torch::equal(l.forward(x), l.forward_int8_gemm(x))) << rows;
    set_int8_decode_activations(Int8Activations::kFp32);
    EXPECT_TRUE(torch::equal(l.forward(x), l.forward_weight_only(x))) << rows;
    set_int8_decode_activations(Int8Activations::kInt8);
  }
}

ModelConfig small_config() {
  ModelConfig c = testing::tiny_model_config(320);
  c.hidden_size = 96;
  c.intermediate_size = 160;
  return c;
}

// Greedy decoding through the int8 engine with int8 activations follows the weight-only path:
// both are fed the weight-only path's tokens (teacher forcing); every step picks the same token
// or one whose weight-only logit is within a near-tie of the best.
TEST(Int8Gemm, GreedyDecodeMatchesTheWeightOnlyPathUpToNearTies) {
  Transformer t(small_config());
  t->init_weights(3);
  {
    torch::NoGradGuard ng;
    for (auto& p : t->parameters())
      if (p.dim() == 2) p.mul_(6.0);  // clear margins, as engine_test does
  }
  EngineModel m = EngineModel::from_module(*t, WeightDtype::kInt8);
  PagedKvPool pa(2, 16, 4, 2, 24), pb(2, 16, 4, 2, 24);
  std::vector<int> table = {3, 9, 0, 14, 5, 11, 2, 7, 1, 12, 4, 8};
  std::vector<int> toks = {5, 17, 250, 33, 91, 7, 120, 64};  // prompt
  int pos = 0, same = 0, steps = 0;
  double worst_gap = 0;
  while (pos + 1 < 40) {
    const int n = static_cast<int>(toks.size()) - pos;
    AttnSeq a{0, n, pos, table};
    std::vector<int> chunk(toks.begin() + pos, toks.end());
    set_int8_decode_activations(Int8Activations::kFp32);
    auto ref = m.forward(chunk, {a}, pa, {n - 1})[0];  // [V]
    set_int8_decode_activations(Int8Activations::kInt8);
    auto got = m.forward(chunk, {a}, pb, {n - 1})[0];  // [V]
    const int64_t r = ref.argmax().item<int64_t>(), g = got.argmax().item<int64_t>();
    const double gap = (ref[r] - ref[g]).item<double>();
    worst_gap = std::max(worst_gap, gap);
    same += r == g;
    ++steps;
    pos += n;
    toks.push_back(static_cast<int>(r));
    EXPECT_LT(((got - ref).norm() / ref.norm()).item<double>(), 0.05) << "step " << steps;
  }
  const double spread = 1.0;  // logits of this model spread over tens of units
  EXPECT_LE(worst_gap, 0.1 * spread) << same << "/" << steps << " identical";
  EXPECT_GE(same * 10, steps * 9) << same << "/" << steps;
}

}  // namespace
}  // namespace ktl
