// LoRA adapters in the engine: a served adapter's greedy output equals its merged checkpoint's
// (fp32, token for token), alone and mixed in one batch with other adapters and the bare base;
// the forward pass's contiguous (sliced) and gathered row groups agree; int8/bf16 bases and the
// torch-ops path; the prefix cache never shares blocks across adapters; preemption keeps the
// adapter; unloading while in use drains; load errors; the CPU kernel (apply_lora_cpu) against
// its torch-ops twin (apply_lora).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "core/adapters/lora_adapter.h"
#include "core/engine/engine_lora.h"
#include "core/engine/engine_model.h"
#include "core/engine/llm_engine.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

using testing::random_tokens;
using testing::TempDir;

std::vector<int> collect_tokens(RequestHandle& h, GenerationEvent* last = nullptr) {
  std::vector<int> out;
  GenerationEvent ev;
  while (true) {
    if (!h.next(&ev, std::chrono::milliseconds(60000))) {
      ADD_FAILURE() << "timed out waiting for the engine";
      return out;
    }
    out.insert(out.end(), ev.token_ids.begin(), ev.token_ids.end());
    if (ev.finish != FinishReason::kNone) break;
  }
  if (last) *last = ev;
  return out;
}

GenerationRequest greedy(std::vector<int> prompt, int max_tokens, std::string adapter = "") {
  GenerationRequest r;
  r.prompt_tokens = std::move(prompt);
  r.sampling.temperature = 0;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  r.adapter = std::move(adapter);
  return r;
}

std::unique_ptr<LlmEngine> make_engine(std::shared_ptr<EngineModel> m, EngineConfig cfg = {}) {
  cfg.num_threads = 2;
  if (cfg.kv_cache_mb == 0 && cfg.kv_cache_blocks == 0) cfg.kv_cache_mb = 4;
  return std::make_unique<LlmEngine>(m, nullptr, cfg, "tiny");
}

void wait_until_idle(LlmEngine& e) {
  for (int i = 0; i < 300 && (e.stats().kv_blocks_used != 0 || e.stats().running != 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

// One adapter on the tiny margin model: written as PEFT files, and its merged twin.
struct AdapterCase {
  std::string dir;
  LoraAdapter adapter;
  std::shared_ptr<EngineModel> merged;  // fp32
};

AdapterCase make_adapter(const TempDir& tmp, const std::string& name, uint64_t seed,
                         const std::string& targets, int rank = 4) {
  auto m = testing::margin_model(1);  // the base's weights
  LoraConfig c;
  c.rank = rank;
  c.alpha = 2.0 * rank;
  c.targets = parse_lora_targets(targets);
  attach_lora(*m, c, seed);
  {
    torch::NoGradGuard ng;  // B is zero after PEFT's init: make the adapter matter
    auto gen = at::detail::createCPUGenerator(seed);
    for (auto& [key, p] : lora_named_parameters(*m))
      if (key.find("lora_B") != std::string::npos) p.copy_(at::normal(0.0, 0.3, p.sizes(), gen));
  }
  AdapterCase out;
  out.adapter = extract_lora(*m);
  out.dir = tmp / name;
  save_peft_adapter(out.dir, out.adapter);
  merge_lora(*m);
  out.merged = std::make_shared<EngineModel>(EngineModel::from_module(*m, WeightDtype::kFp32));
  return out;
}

std::shared_ptr<EngineModel> base_model(WeightDtype d = WeightDtype::kFp32) {
  auto t = testing::margin_model(1);
  return std::make_shared<EngineModel>(EngineModel::from_module(*t, d));
}

class EngineLoraTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir("ktl-lora");
    cases_ = new std::vector<AdapterCase>{make_adapter(*tmp_, "a1", 11, "all"),
                                          make_adapter(*tmp_, "a2", 22, "q,v", 8),
                                          make_adapter(*tmp_, "a3", 33, "o,gate,up,down")};
  }
  static void TearDownTestSuite() {
    delete cases_;
    delete tmp_;
  }
  // Each prompt greedily on its adapter's merged twin (index -1: the base), alone.
  static std::vector<std::vector<int>> twins(const std::vector<std::vector<int>>& prompts,
                                             const std::vector<int>& which, int max_tokens) {
    std::vector<std::vector<int>> out;
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto m = which[i] < 0 ? base_model() : (*cases_)[which[i]].merged;
      auto e = make_engine(m);
      out.push_back(collect_tokens(*e->submit(greedy(prompts[i], max_tokens))));
    }
    return out;
  }
  static void load_all(LlmEngine& e) {
    for (int k = 0; k < 3; ++k) e.load_adapter("a" + std::to_string(k + 1), (*cases_)[k].dir);
  }
  static TempDir* tmp_;
  static std::vector<AdapterCase>* cases_;
};
TempDir* EngineLoraTest::tmp_ = nullptr;
std::vector<AdapterCase>* EngineLoraTest::cases_ = nullptr;

TEST_F(EngineLoraTest, AloneEqualsTheMergedCheckpoint) {
  auto e = make_engine(base_model());
  load_all(*e);
  const std::vector<std::vector<int>> prompts = {random_tokens(7, 1), random_tokens(30, 2)};
  for (int k = 0; k < 3; ++k) {
    const auto want = twins(prompts, {k, k}, 16);
    for (size_t p = 0; p < prompts.size(); ++p) {
      const auto got = collect_tokens(*e->submit(greedy(prompts[p], 16, "a" + std::to_string(k + 1))));
      EXPECT_EQ(got, want[p]) << "adapter " << k << " prompt " << p;
      const auto base = collect_tokens(*e->submit(greedy(prompts[p], 16)));
      EXPECT_NE(got, base) << "adapter " << k << " changes nothing: the test would prove nothing";
    }
  }
}

TEST_F(EngineLoraTest, MixedBatchOfThreeAdaptersAndTheBaseEqualsEachTwin) {
  std::vector<std::vector<int>> prompts;
  std::vector<int> which;
  for (int i = 0; i < 8; ++i) {
    prompts.push_back(random_tokens(5 + 9 * i, 100 + i));
    which.push_back(i % 4 - 1);  // base, a1, a2, a3, base, ...
  }
  const auto want = twins(prompts, which, 20);
  EngineConfig cfg;
  cfg.max_batched_tokens = 24;  // prefill chunks beside decodes
  auto e = make_engine(base_model(), cfg);
  load_all(*e);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (size_t i = 0; i < prompts.size(); ++i)
    hs.push_back(e->submit(
        greedy(prompts[i], 20, which[i] < 0 ? "" : "a" + std::to_string(which[i] + 1))));
  for (size_t i = 0; i < hs.size(); ++i) EXPECT_EQ(collect_tokens(*hs[i]), want[i]) << i;
  wait_until_idle(*e);
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
  for (const auto& a : e->adapters()) {
    EXPECT_EQ(a.in_flight, 0) << a.name;
    EXPECT_EQ(a.requests_total, 2u) << a.name;
  }
}

// The forward pass directly: rows of one adapter in one run (sliced) and interleaved (gathered)
// give the same logits, and each row equals its merged twin's.
TEST_F(EngineLoraTest, SlicedAndGatheredRowGroupsAgreeWithMergedTwins) {
  const ModelConfig& mc = testing::engine_tiny_config();
  auto base = base_model();
  std::vector<std::unique_ptr<EngineLora>> lora;
  for (int k = 0; k < 3; ++k)
    lora.push_back(std::make_unique<EngineLora>((*cases_)[k].adapter, mc, torch::kCPU));
  const auto toks = random_tokens(4, 9);
  // Four one-token sequences, so every row is its own sequence's last row.
  auto run = [&](const EngineModel& m, const std::vector<const EngineLora*>& rl) {
    PagedKvPool pool(mc.num_layers, 8, 4, mc.num_kv_heads, mc.head_dim());
    std::vector<AttnSeq> seqs;
    for (int i = 0; i < 4; ++i) seqs.push_back({i, 1, 0, {i}});
    return m.forward(toks, seqs, pool, {0, 1, 2, 3}, AttnPath::kAuto, rl);
  };
  const EngineLora *a1 = lora[0].get(), *a2 = lora[1].get();
  auto gathered = run(*base, {a1, nullptr, a1, a2});
  auto sliced = run(*base, {a1, a1, nullptr, a2});
  auto twin1 = run(*(*cases_)[0].merged, {});
  auto twin2 = run(*(*cases_)[1].merged, {});
  auto plain = run(*base, {});
  auto row = [](const torch::Tensor& t, int i) { return t.narrow(0, i, 1); };
  // Rows hold the same token only where toks agree: compare row i with row i of the twin.
  EXPECT_TRUE(torch::allclose(row(gathered, 0), row(twin1, 0), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(row(gathered, 1), row(plain, 1), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(row(gathered, 2), row(twin1, 2), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(row(gathered, 3), row(twin2, 3), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(row(sliced, 1), row(twin1, 1), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(row(sliced, 2), row(plain, 2), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(row(sliced, 0), row(gathered, 0), 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(row(twin1, 0), row(plain, 0), 1e-2, 1e-2));
}

// int8 and bf16 bases carry fp32 adapters: batch-invariant (alone = mixed), and close to fp32;
// the torch-ops path equals the fast path.
TEST_F(EngineLoraTest, QuantizedBasesAndTorchOpsPath) {
  const ModelConfig& mc = testing::engine_tiny_config();
  const auto toks = random_tokens(12, 5);
  auto logits = [&](const EngineModel& m, const EngineLora* l) {
    PagedKvPool pool(mc.num_layers, 8, 4, mc.num_kv_heads, mc.head_dim());
    std::vector<int> rows(toks.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int>(i);
    std::vector<AttnSeq> seqs = {{0, static_cast<int>(toks.size()), 0, {0, 1, 2}}};
    return m.forward(toks, seqs, pool, rows, AttnPath::kAuto,
                     std::vector<const EngineLora*>(toks.size(), l));
  };
  EngineLora a1((*cases_)[0].adapter, mc, torch::kCPU);
  const auto ref = logits(*base_model(), &a1);
  const auto twin = logits(*(*cases_)[0].merged, nullptr);
  EXPECT_TRUE(torch::allclose(ref, twin, 1e-4, 1e-4));
  for (WeightDtype d : {WeightDtype::kInt8, WeightDtype::kBf16}) {
    const auto q = logits(*base_model(d), &a1);
    const double rel = ((q - ref).abs().max() / ref.abs().max()).item<double>();
    EXPECT_LT(rel, 0.05) << to_string(d);
  }
  auto ops = base_model();
  ops->use_torch_ops(torch::kCPU);
  EXPECT_TRUE(torch::allclose(logits(*ops, &a1), ref, 1e-4, 1e-4));

  // int8 engine: the adapter alone and mixed with others gives the same tokens.
  const std::vector<std::vector<int>> prompts = {random_tokens(9, 41), random_tokens(17, 42),
                                                 random_tokens(13, 43)};
  auto e = make_engine(base_model(WeightDtype::kInt8));
  load_all(*e);
  std::vector<std::vector<int>> alone;
  for (const auto& p : prompts) alone.push_back(collect_tokens(*e->submit(greedy(p, 12, "a1"))));
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    hs.push_back(e->submit(greedy(prompts[i], 12, "a1")));
    hs.push_back(e->submit(greedy(prompts[i], 12, "a2")));
    hs.push_back(e->submit(greedy(prompts[i], 12)));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(collect_tokens(*hs[3 * i]), alone[i]) << i;
    collect_tokens(*hs[3 * i + 1]);
    collect_tokens(*hs[3 * i + 2]);
  }
}

TEST_F(EngineLoraTest, PrefixCacheIsNotSharedAcrossAdapters) {
  const auto prompt = random_tokens(50, 77);  // 3 full blocks of 16
  auto e = make_engine(base_model());
  load_all(*e);
  const auto want = twins({prompt, prompt, prompt}, {-1, 0, 1}, 10);
  GenerationEvent last;
  EXPECT_EQ(collect_tokens(*e->submit(greedy(prompt, 10)), &last), want[0]);
  EXPECT_EQ(collect_tokens(*e->submit(greedy(prompt, 10, "a1")), &last), want[1]);
  EXPECT_EQ(last.cached_prompt_tokens, 0);  // the base's blocks are not a1's
  EXPECT_EQ(collect_tokens(*e->submit(greedy(prompt, 10, "a2")), &last), want[2]);
  EXPECT_EQ(last.cached_prompt_tokens, 0);
  EXPECT_EQ(collect_tokens(*e->submit(greedy(prompt, 10, "a1")), &last), want[1]);
  EXPECT_EQ(last.cached_prompt_tokens, 48);  // a1's own blocks
  EXPECT_EQ(collect_tokens(*e->submit(greedy(prompt, 10)), &last), want[0]);
  EXPECT_EQ(last.cached_prompt_tokens, 48);
  // Reloaded under the same name: a new salt, the old blocks are not reused.
  while (e->unload_adapter("a1") == AdapterUnload::kDraining)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  e->load_adapter("a1", (*cases_)[0].dir);
  EXPECT_EQ(collect_tokens(*e->submit(greedy(prompt, 10, "a1")), &last), want[1]);
  EXPECT_EQ(last.cached_prompt_tokens, 0);
}

TEST_F(EngineLoraTest, PreemptionRecomputesUnderTheSameAdapter) {
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 4; ++i) prompts.push_back(random_tokens(30, 20 + i));
  const std::vector<int> which = {0, 1, -1, 2};
  const auto want = twins(prompts, which, 40);
  EngineConfig cfg;
  cfg.kv_cache_blocks = 1;  // the minimum (one full context): 4 x 70 tokens do not fit
  auto e = make_engine(base_model(), cfg);
  load_all(*e);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (size_t i = 0; i < prompts.size(); ++i)
    hs.push_back(e->submit(
        greedy(prompts[i], 40, which[i] < 0 ? "" : "a" + std::to_string(which[i] + 1))));
  for (size_t i = 0; i < hs.size(); ++i) EXPECT_EQ(collect_tokens(*hs[i]), want[i]) << i;
  wait_until_idle(*e);
  EXPECT_GT(e->stats().preemptions, 0u);
  EXPECT_EQ(e->stats().kv_blocks_used, 0);
}

TEST_F(EngineLoraTest, UnloadWhileInUseDrainsThenFrees) {
  auto e = make_engine(base_model());
  const AdapterInfo info = e->load_adapter("a1", (*cases_)[0].dir);
  EXPECT_EQ(info.rank, 4);
  EXPECT_EQ(info.targets.size(), 7u);
  EXPECT_GT(info.bytes, 0);
  auto h = e->submit(greedy(random_tokens(10, 3), 60, "a1"));
  GenerationEvent ev;
  ASSERT_TRUE(h->next(&ev, std::chrono::milliseconds(30000)));  // streaming
  EXPECT_EQ(e->unload_adapter("a1"), AdapterUnload::kDraining);
  ASSERT_EQ(e->adapters().size(), 1u);
  EXPECT_TRUE(e->adapters()[0].draining);
  EXPECT_THROW(e->submit(greedy(random_tokens(4, 1), 2, "a1")), AdapterNotFound);
  EXPECT_THROW(e->load_adapter("a1", (*cases_)[0].dir), AdapterConflict);  // still held
  GenerationEvent last;
  const auto rest = collect_tokens(*h, &last);
  EXPECT_EQ(last.finish, FinishReason::kLength);
  EXPECT_EQ(rest.size() + ev.token_ids.size(), 60u);
  for (int i = 0; i < 100 && !e->adapters().empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(e->adapters().empty());
  EXPECT_EQ(e->unload_adapter("a1"), AdapterUnload::kNotFound);
  EXPECT_NO_THROW(e->load_adapter("a1", (*cases_)[0].dir));
  EXPECT_EQ(e->unload_adapter("a1"), AdapterUnload::kUnloaded);  // idle: gone at once
}

TEST_F(EngineLoraTest, LoadErrorsSayWhatIsWrong) {
  auto e = make_engine(base_model());
  e->load_adapter("a1", (*cases_)[0].dir);
  EXPECT_THROW(e->load_adapter("a1", (*cases_)[1].dir), AdapterConflict);
  EXPECT_THROW(e->load_adapter("tiny", (*cases_)[1].dir), AdapterConflict);  // the base's name
  EXPECT_THROW(e->load_adapter("bad name", (*cases_)[1].dir), std::invalid_argument);
  EXPECT_THROW(e->load_adapter("a/b", (*cases_)[1].dir), std::invalid_argument);
  try {
    e->load_adapter("x", tmp_->path() + "/nope");
    ADD_FAILURE() << "loaded a missing directory";
  } catch (const std::runtime_error& ex) {
    EXPECT_NE(std::string(ex.what()).find("adapter_config.json"), std::string::npos) << ex.what();
  }
  // An adapter for a wider model does not fit this base.
  ModelConfig wide = testing::engine_tiny_config();
  wide.hidden_size = 128;
  Transformer w(wide);
  LoraConfig c;
  c.rank = 2;
  attach_lora(*w, c, 1);
  save_peft_adapter(tmp_->path() + "/wide", extract_lora(*w));
  try {
    e->load_adapter("wide", tmp_->path() + "/wide");
    ADD_FAILURE() << "loaded an adapter of another shape";
  } catch (const std::runtime_error& ex) {
    EXPECT_NE(std::string(ex.what()).find("shape"), std::string::npos) << ex.what();
  }
  EXPECT_EQ(e->adapters().size(), 1u);
  EXPECT_THROW(e->submit(greedy(random_tokens(4, 1), 2, "nope")), AdapterNotFound);
}


// ---- The CPU kernel (apply_lora_cpu) against the torch-ops twin (apply_lora) ----

// A random adapter on `mc`: rank r, the given targets.
LoraAdapter random_adapter(const ModelConfig& mc, int r, const std::string& targets, uint64_t s) {
  LoraAdapter a;
  a.config.rank = r;
  a.config.alpha = 1.5 * r;
  a.config.targets = parse_lora_targets(targets);
  auto gen = at::detail::createCPUGenerator(s);
  a.layers.resize(mc.num_layers);
  for (int i = 0; i < mc.num_layers; ++i)
    for (LoraTarget t : a.config.targets) {
      const auto [out, in] = lora_target_shape(mc, t);
      a.layers[i][static_cast<int>(t)] = {at::normal(0.0, 0.5, {r, in}, gen),
                                          at::normal(0.0, 0.5, {out, r}, gen)};
    }
  return a;
}

// The fused linears' input and output widths (engine_model.cpp's layout).
std::vector<std::pair<FusedLora EngineLora::Layer::*, std::pair<int64_t, int64_t>>> linears(
    const ModelConfig& mc) {
  const int64_t D = mc.hidden_size, HD = mc.num_heads * mc.head_dim();
  const int64_t QKV = HD + 2 * mc.num_kv_heads * mc.head_dim(), F = mc.intermediate_size;
  return {{&EngineLora::Layer::qkv, {D, QKV}},
          {&EngineLora::Layer::o, {HD, D}},
          {&EngineLora::Layer::gate_up, {D, 2 * F}},
          {&EngineLora::Layer::down, {F, D}}};
}

TEST(EngineLoraKernel, MatchesTheTorchOpsTwinOnRandomShapesAndGroups) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 12; ++trial) {
    // Widths that are and are not multiples of the kernel's 32 lanes / 64-column tiles.
    ModelConfig mc = testing::engine_tiny_config();
    mc.num_layers = 2;
    mc.num_heads = 4;
    mc.num_kv_heads = trial % 2 ? 2 : 4;
    mc.hidden_size = 4 * (8 + static_cast<int>(rng() % 20));  // head_dim 8..27
    mc.intermediate_size = 16 + static_cast<int>(rng() % 150);
    const torch::ScalarType wt = trial % 3 == 2 ? torch::kBFloat16 : torch::kFloat32;
    std::vector<std::unique_ptr<EngineLora>> lora;
    const char* targets[] = {"all", "q,v", "o,gate,up,down", "k,down", "up"};
    for (int k = 0; k < 5; ++k)
      lora.push_back(std::make_unique<EngineLora>(
          random_adapter(mc, 1 + static_cast<int>(rng() % 16), targets[k], 100 * trial + k), mc,
          torch::kCPU, wt));
    // Rows: gathered (random), or contiguous runs (as the engine orders a step), some on the base.
    const int64_t N = 1 + static_cast<int64_t>(rng() % 40);
    std::vector<const EngineLora*> rows(N);
    for (int64_t i = 0; i < N; ++i) {
      const int k = static_cast<int>(rng() % 6);
      rows[i] = k == 5 ? nullptr : lora[k].get();
    }
    if (trial % 2) std::stable_sort(rows.begin(), rows.end());
    const auto groups = group_lora_rows(rows, torch::kCPU);
    for (int layer = 0; layer < mc.num_layers; ++layer)
      for (const auto& [which, io] : linears(mc)) {
        auto x = torch::randn({N, io.first});   // [N, in]
        auto y0 = torch::randn({N, io.second});  // [N, out]: the base's output
        auto want = y0.clone(), got = y0.clone();
        apply_lora(groups, layer, which, x, want);
        apply_lora_cpu(groups, layer, which, x, got);
        EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5))
            << "trial " << trial << " layer " << layer << " max diff "
            << (got - want).abs().max().item<float>();
        EXPECT_FALSE(torch::equal(got, y0)) << "the adapters added nothing";
      }
  }
}

}  // namespace
}  // namespace ktl
