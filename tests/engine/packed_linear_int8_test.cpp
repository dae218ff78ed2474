// The engine's int8 path (PackedLinear over core/kernels' int8 GEMM) against the dequantized
// product, the row limit and the switch back to weight-only, and greedy decoding through it
// against the previous weight-only path.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/engine/engine_model.h"
#include "core/engine/packed_linear.h"
#include "core/kernels/int8_gemm.h"
#include "core/model/model.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

const Int8Kernels kAll[] = {Int8Kernels::kAvx512Vnni, Int8Kernels::kAvxVnni, Int8Kernels::kAvx2,
                            Int8Kernels::kNeonI8mm,   Int8Kernels::kNeonDot, Int8Kernels::kScalar};

TEST(PackedLinearInt8, DequantizedGemmEqualsTwinAndIsCloseToFp32) {
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

TEST(PackedLinearInt8, PackedLinearRunsItUpToTheRowLimitAndTheSwitchRestoresWeightOnly) {
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
TEST(PackedLinearInt8, GreedyDecodeMatchesTheWeightOnlyPathUpToNearTies) {
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
