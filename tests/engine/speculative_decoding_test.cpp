// Speculative decoding in the engine: greedy output identical to plain decoding at batch 1, 4
// and 16 (speculating and plain sequences, prefill chunks and drafts in one batch), with
// preemption and prefix-cache hits; KV blocks back in the pool; sampling through the rule.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <thread>

#include "core/engine/draft_runner.h"
#include "core/engine/engine_model.h"
#include "core/engine/llm_engine.h"
#include "tests/support/engine_fixture.h"

namespace ktl {
namespace {

using testing::random_tokens;

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

void wait_until_idle(LlmEngine& e) {
  for (int i = 0; i < 300 && (e.stats().kv_blocks_used != 0 || e.stats().running != 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

GenerationRequest greedy(std::vector<int> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt_tokens = std::move(prompt);
  r.sampling.temperature = 0;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

std::shared_ptr<EngineModel> model_of(uint64_t seed) {
  auto t = testing::margin_model(seed);
  return std::make_shared<EngineModel>(EngineModel::from_module(*t, WeightDtype::kFp32));
}

// A smaller draft with the target's vocabulary: random, so it rarely agrees with the target.
std::shared_ptr<EngineModel> small_draft(uint64_t seed) {
  ModelConfig c = testing::engine_tiny_config();
  c.num_layers = 1;
  return std::make_shared<EngineModel>(EngineModel::random_init(c, WeightDtype::kFp32, seed));
}

std::unique_ptr<LlmEngine> make_engine(std::shared_ptr<EngineModel> m, EngineConfig cfg,
                                       std::shared_ptr<EngineModel> draft = nullptr) {
  cfg.num_threads = 2;
  if (cfg.kv_cache_mb == 0 && cfg.kv_cache_blocks == 0) cfg.kv_cache_mb = 4;
  return std::make_unique<LlmEngine>(m, nullptr, cfg, "tiny", nullptr, draft);
}

EngineConfig spec_config(int k, int prompt_lookup = 0) {
  EngineConfig c;
  c.speculative.mode = SpeculativeMode::kFixed;
  c.speculative.num_tokens = k;
  c.speculative.prompt_lookup = prompt_lookup;
  return c;
}

// Prompts of varied lengths; some repeat a phrase (prompt lookup finds those); a few ask for
// 1 or 2 tokens, which never speculate.
std::vector<GenerationRequest> workload(int n) {
  std::vector<GenerationRequest> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int> p = random_tokens(3 + (i * 7) % 41, 100 + i);
    if (i % 3 == 0) {
      const std::vector<int> phrase = random_tokens(6, 500 + i);
      for (int rep = 0; rep < 3; ++rep) p.insert(p.end(), phrase.begin(), phrase.end());
    }
    out.push_back(greedy(p, i % 5 == 4 ? 1 + i % 2 : 20 + i % 9));
  }
  return out;
}

std::vector<std::vector<int>> run_all(LlmEngine& e, const std::vector<GenerationRequest>& reqs) {
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (const auto& r : reqs) hs.push_back(e.submit(r));
  std::vector<std::vector<int>> out;
  for (auto& h : hs) out.push_back(collect_tokens(*h));
  return out;
}

std::vector<std::vector<int>> plain_reference(std::shared_ptr<EngineModel> m,
                                              const std::vector<GenerationRequest>& reqs) {
  EngineConfig cfg;
  cfg.enable_prefix_cache = false;
  auto e = make_engine(m, cfg);
  std::vector<std::vector<int>> out;
  for (const auto& r : reqs) {
    auto h = e->submit(r);
    out.push_back(collect_tokens(*h));
  }
  return out;
}

TEST(SpeculativeDecoding, GreedyDraftOutputIsIdenticalAtBatch1_4_16) {
  auto target = model_of(1);
  const auto reqs = workload(16);
  const auto want = plain_reference(target, reqs);
  // A random draft (mostly rejected) and the target's own weights (always kept): both paths.
  for (auto draft : {small_draft(9), model_of(1)}) {
    for (size_t batch : {1u, 4u, 16u}) {
      EngineConfig cfg = spec_config(4);
      cfg.max_batched_tokens = 32;  // prefill chunks share steps with draft rows
      auto e = make_engine(target, cfg, draft);
      for (size_t first = 0; first < reqs.size(); first += batch) {
        std::vector<GenerationRequest> part(reqs.begin() + first,
                                            reqs.begin() + std::min(reqs.size(), first + batch));
        const auto got = run_all(*e, part);
        for (size_t i = 0; i < part.size(); ++i)
          EXPECT_EQ(got[i], want[first + i]) << "batch " << batch << " request " << first + i;
      }
      wait_until_idle(*e);
      const EngineStats s = e->stats();
      EXPECT_GT(s.spec_verifications, 0u);
      EXPECT_GT(s.spec_proposed, 0u);
      EXPECT_EQ(s.kv_blocks_used, 0);  // rejected slots went back
    }
  }
}

TEST(SpeculativeDecoding, ADraftEqualToTheTargetIsAlwaysKept) {
  auto target = model_of(1);
  const auto reqs = workload(6);
  const auto want = plain_reference(target, reqs);
  auto e = make_engine(target, spec_config(3), model_of(1));
  EXPECT_EQ(run_all(*e, reqs), want);
  const EngineStats s = e->stats();
  EXPECT_EQ(s.spec_accepted, s.spec_proposed);
  EXPECT_GT(s.spec_accepted, 2 * s.spec_verifications);  // ~3 tokens kept per step
}

TEST(SpeculativeDecoding, ARandomDraftIsRejectedYetOutputIsIdentical) {
  auto target = model_of(1);
  const auto reqs = workload(4);
  auto e = make_engine(target, spec_config(4), small_draft(3));
  EXPECT_EQ(run_all(*e, reqs), plain_reference(target, reqs));
  const EngineStats s = e->stats();
  EXPECT_LT(s.spec_accepted, s.spec_proposed);  // rejections happened (the path under test)
}

TEST(SpeculativeDecoding, PromptLookupIsIdenticalAndProposesOnRepeats) {
  auto target = model_of(2);
  const auto reqs = workload(16);
  const auto want = plain_reference(target, reqs);
  for (size_t batch : {1u, 16u}) {
    auto e = make_engine(target, spec_config(5, /*prompt_lookup=*/3));
    for (size_t first = 0; first < reqs.size(); first += batch) {
      std::vector<GenerationRequest> part(reqs.begin() + first,
                                          reqs.begin() + std::min(reqs.size(), first + batch));
      const auto got = run_all(*e, part);
      for (size_t i = 0; i < part.size(); ++i) EXPECT_EQ(got[i], want[first + i]) << first + i;
    }
    EXPECT_GT(e->stats().spec_proposed, 0u);
  }
}

TEST(SpeculativeDecoding, PreemptionKeepsOutputIdenticalAndFreesEveryBlock) {
  auto target = model_of(1);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(greedy(random_tokens(30, 20 + i), 40));
  const auto want = plain_reference(target, reqs);
  for (auto draft : {small_draft(4), model_of(1)}) {
    EngineConfig cfg = spec_config(4);
    cfg.kv_cache_blocks = 1;  // the minimum: one full context, too few for 4 x 70 tokens
    auto e = make_engine(target, cfg, draft);
    EXPECT_EQ(run_all(*e, reqs), want);
    wait_until_idle(*e);
    EXPECT_GT(e->stats().preemptions, 0u);
    EXPECT_EQ(e->stats().kv_blocks_used, 0);
  }
}

TEST(SpeculativeDecoding, PrefixCacheHitsKeepOutputIdentical) {
  auto target = model_of(1);
  const auto prompt = random_tokens(50, 7);
  const auto want = plain_reference(target, {greedy(prompt, 24)});
  auto e = make_engine(target, spec_config(4), model_of(1));
  GenerationEvent last;
  EXPECT_EQ(collect_tokens(*e->submit(greedy(prompt, 24))), want[0]);
  // The second run attaches the first's blocks; the draft recomputes its own K/V in them.
  EXPECT_EQ(collect_tokens(*e->submit(greedy(prompt, 24)), &last), want[0]);
  EXPECT_EQ(last.cached_prompt_tokens, 48);
  const EngineStats s = e->stats();
  EXPECT_EQ(s.spec_accepted, s.spec_proposed);  // the draft's K/V there is right
}

TEST(SpeculativeDecoding, SamplingWithADraftEqualToTheTargetKeepsNearlyEverything) {
  auto target = model_of(1);
  auto e = make_engine(target, spec_config(4), model_of(1));
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r = greedy(random_tokens(10, 40 + i), 30);
    r.sampling.temperature = 0.8f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = 11 + i;
    hs.push_back(e->submit(r));
  }
  for (auto& h : hs) {
    GenerationEvent last;
    const auto toks = collect_tokens(*h, &last);
    EXPECT_EQ(toks.size(), 30u);
    EXPECT_EQ(last.finish, FinishReason::kLength) << last.error;
  }
  const EngineStats s = e->stats();
  // p == q up to the batch's rounding: min(1, p/q) keeps (nearly) every draft token.
  EXPECT_GT(s.spec_accepted, s.spec_proposed * 9 / 10);
}

TEST(SpeculativeDecoding, StopsAtMaxTokensAndEosWithinADraft) {
  auto target = model_of(1);
  const auto reqs = workload(6);
  auto e = make_engine(target, spec_config(8), model_of(1));  // k beyond what is left
  std::vector<GenerationRequest> short_reqs = reqs;
  for (auto& r : short_reqs) r.sampling.max_tokens = 3;
  const auto want = plain_reference(target, short_reqs);
  EXPECT_EQ(run_all(*e, short_reqs), want);
  for (const auto& w : want) EXPECT_EQ(w.size(), 3u);
  // An end token among the kept draft tokens ends the request there: each request stops at
  // its own plain output's 6th token (the draft equals the target, so it is proposed).
  std::vector<GenerationRequest> long_reqs = reqs;
  for (auto& r : long_reqs) r.sampling.max_tokens = 20;
  const auto plain = plain_reference(target, long_reqs);
  std::vector<GenerationRequest> eos_reqs = long_reqs;
  for (size_t i = 0; i < eos_reqs.size(); ++i) {
    if (plain[i].size() < 6) continue;
    eos_reqs[i].sampling.ignore_eos = false;
    eos_reqs[i].sampling.stop_token_ids = {plain[i][5]};
  }
  const auto want_eos = plain_reference(target, eos_reqs);
  const auto got_eos = run_all(*e, eos_reqs);
  EXPECT_EQ(got_eos, want_eos);
  for (size_t i = 0; i < eos_reqs.size(); ++i) {
    if (plain[i].size() >= 6) {
      EXPECT_LE(got_eos[i].size(), 6u) << i;
    }
  }
}

// (Whether auto picks the right k is the controller's test, on a simulated engine.)
TEST(SpeculativeDecoding, AutoModeKeepsOutputIdentical) {
  auto target = model_of(1);
  const auto reqs = workload(16);
  EngineConfig cfg = spec_config(4);
  cfg.speculative.mode = SpeculativeMode::kAuto;
  auto e = make_engine(target, cfg, small_draft(5));
  EXPECT_EQ(run_all(*e, reqs), plain_reference(target, reqs));
}

TEST(SpeculativeDecoding, RefusesSpeculationWithNothingToProposeAndAForeignVocabulary) {
  auto target = model_of(1);
  EXPECT_THROW(make_engine(target, spec_config(4)), std::invalid_argument);
  ModelConfig c = testing::engine_tiny_config();
  c.vocab_size = 256;
  auto foreign = std::make_shared<EngineModel>(EngineModel::random_init(c, WeightDtype::kFp32, 1));
  EXPECT_THROW(make_engine(target, spec_config(4), foreign), std::invalid_argument);
  // Off: a draft is simply unused.
  EngineConfig off;
  auto e = make_engine(target, off, small_draft(1));
  EXPECT_EQ(collect_tokens(*e->submit(greedy(random_tokens(5, 1), 4))).size(), 4u);
  EXPECT_EQ(e->stats().spec_proposed, 0u);
}

}  // namespace
}  // namespace ktl
