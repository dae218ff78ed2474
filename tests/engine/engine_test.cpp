// LibTorch engine tests on a tiny random-init model (fast on 2 cores).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>

#include "core/engine/engine_model.h"
#include "core/engine/llm_engine.h"
#include "core/engine/paged_attention.h"
#include "core/model/model.h"
#include "core/model/ops.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

using testing::random_tokens;
Transformer tiny_model(uint64_t seed = 1) {
  return testing::margin_model(seed);
}

struct Collected {
  std::vector<int> tokens;
  std::string text;
  GenerationEvent last;
};

Collected collect(RequestHandle& h) {
  Collected c;
  GenerationEvent ev;
  while (true) {
    if (!h.next(&ev, std::chrono::milliseconds(30000))) {
      ADD_FAILURE() << "timed out waiting for the engine";
      return c;
    }
    c.tokens.insert(c.tokens.end(), ev.token_ids.begin(), ev.token_ids.end());
    c.text += ev.text;
    if (ev.finish != FinishReason::kNone) break;
  }
  c.last = ev;
  return c;
}

// Stats are published after the step that finished the requests.
void wait_until_idle(LlmEngine& e) {
  for (int i = 0; i < 200 && (e.stats().kv_blocks_used != 0 || e.stats().running != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

GenerationRequest greedy(std::vector<int> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt_tokens = std::move(prompt);
  r.sampling.temperature = 0;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

std::unique_ptr<LlmEngine> make_engine(std::shared_ptr<EngineModel> m, EngineConfig cfg = {}) {
  cfg.num_threads = 2;
  if (cfg.kv_cache_mb == EngineConfig{}.kv_cache_mb) cfg.kv_cache_mb = 4;
  return std::make_unique<LlmEngine>(m, nullptr, cfg, "tiny");
}

std::shared_ptr<EngineModel> engine_model(WeightDtype d = WeightDtype::kFp32) {
  auto t = tiny_model();
  return std::make_shared<EngineModel>(EngineModel::from_module(*t, d));
}

TEST(PagedAttention, KernelAndGatherEqualDenseAttention) {
  torch::manual_seed(0);
  const int H = 4, KV = 2, Dh = 16, BS = 4, NB = 32;
  PagedKvPool pool(1, NB, BS, KV, Dh);
  // Three sequences: a decode row at position 13, a prefill chunk of 9 at 5..13, a fresh 6.
  std::vector<int> lens = {14, 14, 6}, starts = {13, 5, 0};
  std::vector<int> perm(NB);
  for (int i = 0; i < NB; ++i) perm[i] = (i * 7 + 3) % NB;  // scrambled block ids
  std::vector<AttnSeq> seqs;
  std::vector<torch::Tensor> ks, vs;
  int next_block = 0, row = 0;
  for (size_t s = 0; s < lens.size(); ++s) {
    AttnSeq a;
    a.start = starts[s];
    a.num_tokens = lens[s] - starts[s];
    a.row = row;
    row += a.num_tokens;
    for (int b = 0; b < (lens[s] + BS - 1) / BS; ++b) a.block_table.push_back(perm[next_block++]);
    ks.push_back(torch::randn({lens[s], KV, Dh}));
    vs.push_back(torch::randn({lens[s], KV, Dh}));
    // Store the whole context (earlier tokens as if computed in previous steps).
    AttnSeq all = a;
    all.start = 0;
    all.num_tokens = lens[s];
    write_kv(pool.k[0], pool.v[0], compute_slots({all}, BS), ks.back(), vs.back());
    seqs.push_back(a);
  }
  auto q = torch::randn({row, H, Dh});
  auto kernel = paged_attention(q, pool.k[0], pool.v[0], seqs, AttnPath::kKernel);
  auto gather = paged_attention(q, pool.k[0], pool.v[0], seqs, AttnPath::kGather);
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto& a = seqs[s];
    auto dense = causal_attention(q.narrow(0, a.row, a.num_tokens).unsqueeze(0), ks[s].unsqueeze(0),
                                  vs[s].unsqueeze(0), a.start)
                     .squeeze(0);
    EXPECT_TRUE(torch::allclose(kernel.narrow(0, a.row, a.num_tokens), dense, 1e-5, 1e-5)) << s;
    EXPECT_TRUE(torch::allclose(gather.narrow(0, a.row, a.num_tokens), dense, 1e-5, 1e-5)) << s;
  }
}

TEST(EngineModel, CachedIncrementalDecodingMatchesFullRecomputation) {
  auto t = tiny_model();
  t->eval();
  EngineModel m = EngineModel::from_module(*t, WeightDtype::kFp32);
  auto toks = random_tokens(40, 3);
  std::vector<int64_t> ids(toks.begin(), toks.end());
  torch::Tensor full;
  {
    torch::NoGradGuard ng;
    full = t->forward(torch::tensor(ids).unsqueeze(0)).squeeze(0);  // [T, V]
  }
  for (AttnPath path : {AttnPath::kKernel, AttnPath::kGather}) {
    PagedKvPool pool(2, 16, 4, 2, 16);
    std::vector<int> table = {9, 2, 15, 0, 7, 11, 3, 5, 1, 6};
    int pos = 0;
    // Prefill chunks of 13 and 11, then one token at a time.
    for (int n : std::vector<int>{13, 11, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}) {
      AttnSeq a{0, n, pos, table};
      std::vector<int> rows(n);
      for (int i = 0; i < n; ++i) rows[i] = i;
      std::vector<int> chunk(toks.begin() + pos, toks.begin() + pos + n);
      auto logits = m.forward(chunk, {a}, pool, rows, path);  // [n, V]
      EXPECT_TRUE(torch::allclose(logits, full.narrow(0, pos, n), 1e-4, 1e-4)) << "pos " << pos;
      pos += n;
    }
  }
}

TEST(LlmEngine, BatchedGreedyAdmittedAtDifferentStepsEqualsEachAlone) {
  auto m = engine_model();
  std::vector<std::vector<int>> prompts = {random_tokens(5, 1), random_tokens(23, 2),
                                           random_tokens(40, 3), random_tokens(1, 4)};
  std::vector<std::vector<int>> alone;
  {
    EngineConfig cfg;
    cfg.enable_prefix_cache = false;
    auto e = make_engine(m, cfg);
    for (auto& p : prompts) alone.push_back(collect(*e->submit(greedy(p, 12))).tokens);
  }
  EngineConfig cfg;
  cfg.max_batched_tokens = 16;  // long prompts are chunked across steps
  auto e = make_engine(m, cfg);
  auto h0 = e->submit(greedy(prompts[0], 12));
  auto h1 = e->submit(greedy(prompts[1], 12));
  GenerationEvent ev;
  ASSERT_TRUE(h0->next(&ev, std::chrono::milliseconds(30000)));  // h0 is decoding now
  auto h2 = e->submit(greedy(prompts[2], 12));
  ASSERT_TRUE(h1->next(&ev, std::chrono::milliseconds(30000)));
  auto h3 = e->submit(greedy(prompts[3], 12));
  auto r0 = collect(*h0), r1 = collect(*h1), r2 = collect(*h2), r3 = collect(*h3);
  // h0 and h1 lost their first event above; compare the rest.
  EXPECT_EQ(r0.tokens, std::vector<int>(alone[0].begin() + 1, alone[0].end()));
  EXPECT_EQ(r1.tokens, std::vector<int>(alone[1].begin() + 1, alone[1].end()));
  EXPECT_EQ(r2.tokens, alone[2]);
  EXPECT_EQ(r3.tokens, alone[3]);
  EXPECT_EQ(r2.last.finish, FinishReason::kLength) << r2.last.error;
  EXPECT_EQ(r2.last.completion_tokens, 12);
  EXPECT_EQ(r2.last.prompt_tokens, 40);
}

TEST(LlmEngine, PrefixCacheHitsGiveIdenticalOutputAndSavePrefill) {
  auto m = engine_model();
  auto prompt = random_tokens(50, 7);
  auto e = make_engine(m);
  auto first = collect(*e->submit(greedy(prompt, 8)));
  const EngineStats s1 = e->stats();
  auto second = collect(*e->submit(greedy(prompt, 8)));
  const EngineStats s2 = e->stats();
  EXPECT_EQ(first.tokens, second.tokens);
  EXPECT_EQ(first.last.cached_prompt_tokens, 0);
  EXPECT_EQ(second.last.cached_prompt_tokens, 48);  // 3 full blocks of 16
  EXPECT_EQ(s2.prefix_cache_hits - s1.prefix_cache_hits, 48u);
  // A different prompt with the same first block shares only that block.
  auto other = prompt;
  other[20] = 5;
  auto third = collect(*e->submit(greedy(other, 4)));
  EXPECT_EQ(third.last.cached_prompt_tokens, 16);
}

TEST(LlmEngine, PreemptionAndRecomputeGiveIdenticalOutput) {
  auto m = engine_model();
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 4; ++i) prompts.push_back(random_tokens(30, 20 + i));
  std::vector<std::vector<int>> alone;
  {
    auto e = make_engine(m);
    for (auto& p : prompts) alone.push_back(collect(*e->submit(greedy(p, 40))).tokens);
  }
  EngineConfig cfg;
  cfg.kv_cache_blocks = 1;  // the minimum: one full context (9 blocks of 16), too few for 4 x 70
  auto e = make_engine(m, cfg);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (auto& p : prompts) hs.push_back(e->submit(greedy(p, 40)));
  for (size_t i = 0; i < hs.size(); ++i) EXPECT_EQ(collect(*hs[i]).tokens, alone[i]) << i;
  wait_until_idle(*e);
  EXPECT_GT(e->stats().preemptions, 0u);
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
}

TEST(LlmEngine, CancellationFreesEveryBlock) {
  auto m = engine_model();
  auto e = make_engine(m);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < 5; ++i) hs.push_back(e->submit(greedy(random_tokens(20 + i, i), 100)));
  GenerationEvent ev;
  ASSERT_TRUE(hs[0]->next(&ev, std::chrono::milliseconds(30000)));
  for (auto& h : hs) h->cancel();
  for (auto& h : hs) {
    auto c = collect(*h);
    EXPECT_EQ(c.last.finish, FinishReason::kCancelled);
    EXPECT_LT(c.last.completion_tokens, 100);
  }
  wait_until_idle(*e);
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
  EXPECT_EQ(e->stats().running, 0);
}

TEST(LlmEngine, RefusesPromptsLongerThanTheContextAndBadParams) {
  auto m = engine_model();
  auto e = make_engine(m);
  try {
    e->submit(greedy(random_tokens(128, 1), 4));
    FAIL() << "expected a refusal";
  } catch (const std::invalid_argument& ex) {
    EXPECT_NE(std::string(ex.what()).find("context is 128"), std::string::npos) << ex.what();
  }
  EXPECT_THROW(e->submit(greedy({}, 4)), std::invalid_argument);
  EXPECT_THROW(e->submit(greedy({1, 999}, 4)), std::invalid_argument);
  auto bad = greedy({5, 6}, 4);
  bad.sampling.top_p = 2;
  EXPECT_THROW(e->submit(bad), std::invalid_argument);
  // A prompt that fits generates up to the context and stops with "length".
  auto c = collect(*e->submit(greedy(random_tokens(120, 2), 50)));
  EXPECT_EQ(c.last.finish, FinishReason::kLength);
  EXPECT_EQ(c.last.completion_tokens, 8);
}

TEST(LlmEngine, StopStringCutsExactlyAndSeedIsDeterministic) {
  auto m = engine_model();
  auto e = make_engine(m);
  // Text of greedy output (token ids < 256 are bytes, others "<id>").
  auto base = collect(*e->submit(greedy(random_tokens(8, 9), 30)));
  ASSERT_GT(base.text.size(), 12u);
  const std::string stop = base.text.substr(6, 5);
  auto req = greedy(random_tokens(8, 9), 30);
  req.sampling.stop = {stop};
  auto cut = collect(*e->submit(req));
  EXPECT_EQ(cut.last.finish, FinishReason::kStop);
  EXPECT_EQ(cut.text, base.text.substr(0, base.text.find(stop)));
  EXPECT_EQ(cut.text.find(stop), std::string::npos);

  GenerationRequest s = greedy(random_tokens(6, 3), 20);
  s.sampling.temperature = 1.0f;
  s.sampling.seed = 77;
  auto a = collect(*e->submit(s)), b = collect(*e->submit(s));
  EXPECT_EQ(a.tokens, b.tokens);
  s.sampling.seed = 78;
  EXPECT_NE(collect(*e->submit(s)).tokens, a.tokens);
}

TEST(PackedLinear, Int8MatchesDequantizedTwinAndFp32) {
  torch::manual_seed(1);
  auto w = torch::randn({96, 64}) * 0.05;
  auto x = torch::randn({5, 64});
  auto q = PackedLinear::from_float(w, WeightDtype::kInt8);
  auto ref = at::linear(x, w);
  auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a - b).norm() / b.norm()).item<double>();
  };
  EXPECT_LT(rel(q.forward_reference(x), ref), 0.01);  // weight rounding only
  EXPECT_LT(rel(q.forward(x), ref), 0.03);            // + dynamic activation quantization
  EXPECT_LT(rel(q.dequantized(), w), 0.01);
  auto bf = PackedLinear::from_float(w, WeightDtype::kBf16);
  EXPECT_LT(rel(bf.forward(x), ref), 0.01);
}

// Quantizing 256 rows at a time (no full-size fp32 temporary) gives the bits of quantizing the
// whole weight at once, and so does quantizing the parts of a fused weight one by one.
TEST(PackedLinear, Int8QuantizationByRowBlocksAndPartsEqualsTheWholeWeight) {
  torch::manual_seed(7);
  auto w = torch::randn({600, 48}) * 0.05;  // three row blocks, the last one partial
  w[3].zero_();                             // an all-zero row: the scale's floor
  auto scales = (torch::maximum(w.amax(1), -w.amin(1)) / 127.0).clamp_min(1e-12);  // [600]
  auto want = (w / scales.unsqueeze(1)).round_().clamp_(-127, 127).to(torch::kInt8);
  auto [q, s] = quantize_int8_per_channel(w);
  EXPECT_TRUE(torch::equal(q, want));
  EXPECT_TRUE(torch::equal(s, scales));
  auto [qa, sa] = quantize_int8_per_channel(w.narrow(0, 0, 250));
  auto [qb, sb] = quantize_int8_per_channel(w.narrow(0, 250, 350));
  EXPECT_TRUE(torch::equal(torch::cat({qa, qb}), q));
  EXPECT_TRUE(torch::equal(torch::cat({sa, sb}), s));
  auto [qh, sh] = quantize_int8_per_channel(w.to(torch::kBFloat16));  // any float dtype
  EXPECT_EQ(qh.scalar_type(), torch::kInt8);
  EXPECT_EQ(sh.scalar_type(), torch::kFloat32);
}

TEST(PackedLinear, Int8GemvEqualsDequantizedTwinForDecodeBatches) {
  torch::manual_seed(2);
  auto w = torch::randn({130, 70}) * 0.05;  // in_features not a multiple of the 16 lanes
  auto q = PackedLinear::from_float(w, WeightDtype::kInt8);
  for (int64_t rows : {1, 3, 8, 20}) {
    auto x = torch::randn({rows, 70});
    auto got = q.forward_weight_only(x), twin = q.forward_reference(x);  // [rows, 130]
    ASSERT_EQ(got.sizes(), twin.sizes());
    const double rel = ((got - twin).norm() / twin.norm()).item<double>();
    // The weight-only GEMV (up to 8 rows) and the tiled matmul use the same int8 weights and
    // fp32 activations: float rounding only. oneDNN (above 8 rows) also quantizes them.
    EXPECT_LT(rel, rows <= 8 || !q.uses_quantized_engine() ? 1e-5 : 0.03) << rows << " rows";
  }
}

TEST(PackedLinear, Int8TiledMatmulEqualsDequantizedTwinAcrossTiles) {
  torch::manual_seed(3);
  auto w = torch::randn({600, 48}) * 0.05;  // 256-row tiles: two full, one partial
  auto q = PackedLinear::from_float(w, WeightDtype::kInt8);
  auto x = torch::randn({33, 48});
  auto got = q.forward_int8_tiled(x), twin = q.forward_reference(x);  // [33, 600]
  ASSERT_EQ(got.sizes(), twin.sizes());
  EXPECT_TRUE(torch::allclose(got, twin, 1e-5, 1e-5));
}

TEST(EngineModel, Int8LogitsCloseToFp32AndExportRoundTrips) {
  auto t = tiny_model();
  EngineModel f = EngineModel::from_module(*t, WeightDtype::kFp32);
  EngineModel q = EngineModel::from_module(*t, WeightDtype::kInt8);
  EXPECT_LT((q.weight_bytes() - q.packed_bytes()) * 3, f.weight_bytes());
  EXPECT_LE(q.packed_bytes() * 3, f.weight_bytes());  // oneDNN's packed copy, where it is used
  auto toks = random_tokens(20, 5);
  std::vector<int> rows(20);
  for (int i = 0; i < 20; ++i) rows[i] = i;
  PagedKvPool p1(2, 8, 4, 2, 16), p2(2, 8, 4, 2, 16), p3(2, 8, 4, 2, 16);
  AttnSeq a{0, 20, 0, {0, 1, 2, 3, 4}};
  auto lf = f.forward(toks, {a}, p1, rows);
  auto lq = q.forward(toks, {a}, p2, rows);
  EXPECT_LT(((lq - lf).norm() / lf.norm()).item<double>(), 0.05);
  // Greedy choices mostly agree.
  EXPECT_GE((lq.argmax(1) == lf.argmax(1)).sum().item<int64_t>(), 16);
  // Exported int8 weights reload to the same model.
  std::map<std::string, StoredWeight> w;
  for (auto& [name, sw] : q.export_weights(WeightDtype::kInt8)) w[name] = sw;
  EngineModel r(
      t->config(), [&](const std::string& n) { return w.at(n); }, WeightDtype::kInt8);
  auto lr = r.forward(toks, {a}, p3, rows);
  EXPECT_TRUE(torch::allclose(lr, lq, 1e-4, 1e-4));
}

}  // namespace
}  // namespace ktl
