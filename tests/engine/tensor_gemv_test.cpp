// The GEMV kernels through their tensor wrappers and PackedLinear: against at::linear of the
// same weights (bf16 widened to fp32), the argument checks, zero rows in every dtype.
#include "core/engine/tensor_gemv.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/engine/packed_linear.h"

namespace ktl {
namespace {

TEST(Bf16Gemv, EqualsWidenedWeightsTimesFp32Activations) {
  torch::manual_seed(4);
  auto w = (torch::randn({130, 70}) * 0.05).to(torch::kBFloat16);  // 70: not a multiple of 16
  for (int64_t rows : {1, 2, 3, 5, 6, 7, 8}) {
    auto x = torch::randn({rows, 70});
    auto got = bf16_gemv(w, x), twin = at::linear(x, w.to(torch::kFloat32));  // [rows, 130]
    ASSERT_EQ(got.sizes(), twin.sizes());
    EXPECT_TRUE(torch::allclose(got, twin, 1e-5, 1e-5)) << rows << " rows";
    for (auto k : {Bf16Kernels::kAvx512, Bf16Kernels::kAvx2, Bf16Kernels::kScalar}) {
      if (!bf16_kernels_supported(k)) continue;
      EXPECT_TRUE(torch::allclose(bf16_gemv(w, x, k), twin, 1e-5, 1e-5))
          << rows << " rows, kernels " << static_cast<int>(k);
    }
  }
  EXPECT_THROW(bf16_gemv(w, torch::randn({kBf16GemvMaxRows + 1, 70})), std::invalid_argument);
  EXPECT_THROW(bf16_gemv(w.to(torch::kFloat32), torch::randn({1, 70})), std::invalid_argument);
}

// The fp32 small-batch GEMV (the same kernels on fp32 weights) against at::linear, every kernel,
// row counts across the 8-row calls.
TEST(Fp32Gemv, EqualsLinearForEveryKernelAndRowCount) {
  torch::manual_seed(6);
  auto w = torch::randn({130, 70}) * 0.05;  // 70: not a multiple of 16
  for (int64_t rows : {1, 2, 7, 8, 9, 15, 16}) {
    auto x = torch::randn({rows, 70});
    auto twin = at::linear(x, w);  // [rows, 130]
    for (auto k :
         {Bf16Kernels::kBest, Bf16Kernels::kAvx512, Bf16Kernels::kAvx2, Bf16Kernels::kScalar}) {
      if (!bf16_kernels_supported(k)) continue;
      auto got = fp32_gemv(w, x, k);
      ASSERT_EQ(got.sizes(), twin.sizes());
      EXPECT_TRUE(torch::allclose(got, twin, 1e-5, 1e-5))
          << rows << " rows, kernels " << static_cast<int>(k);
    }
  }
  EXPECT_THROW(fp32_gemv(w, torch::randn({kFp32GemvMaxRows + 1, 70})), std::invalid_argument);
  auto l = PackedLinear::from_float(w, WeightDtype::kFp32);
  auto x = torch::randn({12, 70});
  EXPECT_TRUE(torch::equal(l.forward(x), fp32_gemv(w, x)));
}

// A step where no sequence samples gives the output head no rows: every dtype answers [0, out]
// (the fp32 and bf16 GEMVs take 1..N rows; a chunked prefill step failed with fp32 once they ran
// batched decode).
TEST(Fp32Gemv, PackedLinearTakesZeroRowsInEveryDtype) {
  auto w = torch::randn({130, 70}) * 0.05;
  for (auto d : {WeightDtype::kFp32, WeightDtype::kBf16, WeightDtype::kInt8}) {
    auto y = PackedLinear::from_float(w, d).forward(torch::randn({0, 70}));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{0, 130})) << to_string(d);
  }
}

TEST(Bf16Gemv, PackedLinearUsesItForDecodeAndOneDnnAbove) {
  torch::manual_seed(5);
  auto w = torch::randn({300, 96}) * 0.05;
  auto l = PackedLinear::from_float(w, WeightDtype::kBf16);
  auto wide = l.weight().to(torch::kFloat32);
  for (int64_t rows : {1, 6, 20}) {
    auto x = torch::randn({rows, 96});
    auto twin = at::linear(x, wide);
    // GEMV rows keep fp32 activations (rounding only); above 6, oneDNN rounds them to bf16.
    const double tol = rows <= kBf16GemvMaxRows ? 1e-5 : 1e-2;
    EXPECT_LT(((l.forward(x) - twin).norm() / twin.norm()).item<double>(), tol) << rows;
  }
}

}  // namespace
}  // namespace ktl
