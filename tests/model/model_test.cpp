// The model's math against naive formulas and its defining properties.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/model/model.h"
#include "core/model/ops.h"

namespace ktl {
namespace {

ModelConfig tiny_config(int heads = 4, int kv_heads = 2) {
  ModelConfig c;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.intermediate_size = 48;
  c.max_seq_length = 64;
  return c;
}

TEST(RmsNorm, MatchesNaiveFormula) {
  torch::manual_seed(0);
  auto x = torch::randn({3, 5, 16});
  auto w = torch::randn({16});
  auto got = rms_norm(x, w, 1e-5);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) {
      double ss = 0;
      for (int k = 0; k < 16; ++k) ss += std::pow(x[i][j][k].item<double>(), 2);
      const double scale = 1.0 / std::sqrt(ss / 16 + 1e-5);
      for (int k = 0; k < 16; ++k)
        EXPECT_NEAR(got[i][j][k].item<double>(),
                    x[i][j][k].item<double>() * scale * w[k].item<double>(), 1e-5);
    }
}

TEST(Rope, PreservesNorms) {
  torch::manual_seed(1);
  auto x = torch::randn({2, 7, 3, 8});  // [B, T, H, Dh]
  auto [cos, sin] = rope_cos_sin(torch::arange(7), 8, 10000.0);
  auto y = apply_rope(x, cos, sin);
  EXPECT_TRUE(torch::allclose(x.norm(2, -1), y.norm(2, -1), 1e-5, 1e-5));
  // Position 0 is the identity.
  EXPECT_TRUE(torch::allclose(x.select(1, 0), y.select(1, 0), 1e-6, 1e-6));
}

TEST(Rope, DotProductDependsOnlyOnDistance) {
  torch::manual_seed(2);
  auto q = torch::randn({1, 1, 1, 16});
  auto k = torch::randn({1, 1, 1, 16});
  auto rot = [](const torch::Tensor& v, int64_t pos) {
    auto [c, s] = rope_cos_sin(torch::tensor({pos}), 16, 10000.0);
    return apply_rope(v, c, s);
  };
  const double d1 = (rot(q, 5) * rot(k, 2)).sum().item<double>();    // distance 3
  const double d2 = (rot(q, 40) * rot(k, 37)).sum().item<double>();  // distance 3
  const double d3 = (rot(q, 40) * rot(k, 30)).sum().item<double>();  // distance 10
  EXPECT_NEAR(d1, d2, 1e-4);
  EXPECT_GT(std::abs(d1 - d3), 1e-4);
}

TEST(Attention, GqaShapes) {
  auto c = tiny_config(4, 2);
  Attention attn(c);
  auto x = torch::randn({2, 9, 32});
  auto [cos, sin] = rope_cos_sin(torch::arange(9), c.head_dim(), c.rope_theta);
  EXPECT_EQ(attn->k_proj->weight.size(0), 2 * c.head_dim());
  auto y = attn(x, cos, sin);
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 9, 32}));
}

TEST(Attention, GqaEqualsMultiHeadWithRepeatedKvWeights) {
  torch::manual_seed(3);
  auto gqa_cfg = tiny_config(4, 2), mha_cfg = tiny_config(4, 4);
  Attention gqa(gqa_cfg), mha(mha_cfg);
  {
    torch::NoGradGuard ng;
    const int64_t hd = gqa_cfg.head_dim();
    mha->q_proj->weight.copy_(gqa->q_proj->weight);
    mha->o_proj->weight.copy_(gqa->o_proj->weight);
    // Each kv head serves 2 query heads: duplicate its rows in head order.
    auto rep = [&](const torch::Tensor& w) {
      return w.view({2, 1, hd, 32}).expand({2, 2, hd, 32}).reshape({4 * hd, 32});
    };
    mha->k_proj->weight.copy_(rep(gqa->k_proj->weight));
    mha->v_proj->weight.copy_(rep(gqa->v_proj->weight));
  }
  auto x = torch::randn({2, 6, 32});
  auto [cos, sin] = rope_cos_sin(torch::arange(6), gqa_cfg.head_dim(), 10000.0);
  EXPECT_TRUE(torch::allclose(gqa(x, cos, sin), mha(x, cos, sin), 1e-5, 1e-5));
}

TEST(Attention, MatchesNaiveSoftmaxAttention) {
  torch::manual_seed(4);
  auto q = torch::randn({1, 5, 2, 4}), k = torch::randn({1, 5, 2, 4}),
       v = torch::randn({1, 5, 2, 4});
  auto out = causal_attention(q, k, v);
  for (int h = 0; h < 2; ++h)
    for (int t = 0; t < 5; ++t) {
      std::vector<double> s;
      double mx = -1e30;
      for (int j = 0; j <= t; ++j) {
        s.push_back((q[0][t][h] * k[0][j][h]).sum().item<double>() / 2.0);
        mx = std::max(mx, s.back());
      }
      double z = 0;
      for (auto& e : s) z += (e = std::exp(e - mx));
      for (int d = 0; d < 4; ++d) {
        double acc = 0;
        for (int j = 0; j <= t; ++j) acc += s[j] / z * v[0][j][h][d].item<double>();
        EXPECT_NEAR(out[0][t][h][d].item<double>(), acc, 1e-5);
      }
    }
}

TEST(Transformer, CausalMasking) {
  torch::manual_seed(5);
  Transformer model(tiny_config());
  model->eval();
  torch::NoGradGuard ng;
  auto a = torch::randint(0, 97, {1, 12}, torch::kLong);
  auto b = a.clone();
  b.narrow(1, 7, 5).random_(0, 97);  // change tokens after position 6
  auto la = model(a), lb = model(b);
  EXPECT_TRUE(torch::allclose(la.narrow(1, 0, 7), lb.narrow(1, 0, 7), 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(la.narrow(1, 7, 5), lb.narrow(1, 7, 5), 1e-5, 1e-5));
}

TEST(Transformer, ForwardShapeAndFiniteLogits) {
  Transformer model(tiny_config());
  auto logits = model(torch::randint(0, 97, {3, 10}, torch::kLong));
  EXPECT_EQ(logits.sizes(), torch::IntArrayRef({3, 10, 97}));
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
}

int64_t count_params(TransformerImpl& m) {
  int64_t n = 0;
  for (auto& p : m.parameters()) n += p.numel();
  return n;
}

TEST(Transformer, ParameterCountMatchesClosedForm) {
  for (bool tie : {true, false}) {
    auto c = tiny_config();
    c.tie_word_embeddings = tie;
    Transformer m(c);
    EXPECT_EQ(count_params(*m), c.num_parameters()) << "tie=" << tie;
  }
  // model_small: 32000*768 + 12 * (768*768*2 + 2*768*256 + 3*768*2048 + 2*768) + 768
  ModelConfig small;
  EXPECT_EQ(
      small.num_parameters(),
      32000LL * 768 + 12LL * (768 * 768 * 2 + 2 * 768 * 256 + 3 * 768 * 2048 + 2 * 768) + 768);
}

TEST(Transformer, TiedHeadSharesEmbedding) {
  Transformer m(tiny_config());
  EXPECT_FALSE(m->lm_head);
  EXPECT_EQ(m->output_weight().data_ptr(), m->embed_tokens->weight.data_ptr());
}

TEST(Transformer, HuggingFaceNames) {
  Transformer m(tiny_config());
  std::set<std::string> names;
  for (auto& p : m->named_parameters()) names.insert(hf_parameter_name(p.key()));
  EXPECT_TRUE(names.count("model.embed_tokens.weight"));
  EXPECT_TRUE(names.count("model.layers.1.self_attn.q_proj.weight"));
  EXPECT_TRUE(names.count("model.layers.0.mlp.gate_proj.weight"));
  EXPECT_TRUE(names.count("model.layers.0.input_layernorm.weight"));
  EXPECT_TRUE(names.count("model.norm.weight"));
  EXPECT_EQ(module_parameter_name("model.norm.weight"), "norm.weight");
}

}  // namespace
}  // namespace ktl
