// Log-probabilities, echo (prompt log-probabilities), n forks sharing a prompt, and grammar-
// constrained sampling in the engine, each against its naive twin: an offline full forward of
// the same tokens, or the same requests run alone.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <regex>

#include "core/engine/engine_model.h"
#include "core/engine/llm_engine.h"
#include "core/grammar/compiled_grammar.h"
#include "core/grammar/token_vocab.h"
#include "core/model/model.h"
#include "tests/support/engine_fixture.h"

namespace ktl {
namespace {

using testing::random_tokens;

struct Outcome {
  std::vector<int> tokens;
  std::vector<TokenLogprob> logprobs, prompt_logprobs;
  std::string text;
  GenerationEvent last;
};

Outcome collect(RequestHandle& h) {
  Outcome r;
  GenerationEvent ev;
  while (true) {
    if (!h.next(&ev, std::chrono::milliseconds(60000))) {
      ADD_FAILURE() << "timed out waiting for the engine";
      return r;
    }
    r.tokens.insert(r.tokens.end(), ev.token_ids.begin(), ev.token_ids.end());
    r.logprobs.insert(r.logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
    r.prompt_logprobs.insert(r.prompt_logprobs.end(), ev.prompt_logprobs.begin(),
                             ev.prompt_logprobs.end());
    r.text += ev.text;
    if (ev.finish != FinishReason::kNone) break;
  }
  r.last = ev;
  return r;
}

// Unscaled random weights: logits of order 1, so fp32 log-softmax agrees to ~1e-6.
Transformer plain_model() {
  Transformer m(testing::engine_tiny_config());
  m->init_weights(5);
  m->eval();
  return m;
}

std::unique_ptr<LlmEngine> make_engine(Transformer t, EngineConfig cfg = {}) {
  cfg.num_threads = 2;
  cfg.kv_cache_mb = 8;
  auto m = std::make_shared<EngineModel>(EngineModel::from_module(*t, WeightDtype::kFp32));
  return std::make_unique<LlmEngine>(m, nullptr, cfg, "tiny");
}

// log_softmax of a full forward over `ids`: [T, V].
torch::Tensor offline_logprobs(Transformer t, const std::vector<int>& ids) {
  torch::NoGradGuard ng;
  std::vector<int64_t> v(ids.begin(), ids.end());
  return torch::log_softmax(t->forward(torch::tensor(v).unsqueeze(0)).squeeze(0), -1);
}

GenerationRequest sampled(std::vector<int> prompt, int max_tokens, uint64_t seed, int top) {
  GenerationRequest r;
  r.prompt_tokens = std::move(prompt);
  r.sampling.temperature = 1.0f;
  r.sampling.seed = seed;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  r.sampling.logprobs = top;
  return r;
}

// Every generated token's logprob and rivals equal the offline forward's within 1e-4 nats.
void expect_matches_offline(Transformer t, const std::vector<int>& prompt, const Outcome& run,
                            int top) {
  ASSERT_EQ(run.logprobs.size(), run.tokens.size());
  std::vector<int> all = prompt;
  all.insert(all.end(), run.tokens.begin(), run.tokens.end());
  const auto ref = offline_logprobs(t, all);  // [T, V]
  for (size_t j = 0; j < run.tokens.size(); ++j) {
    const auto row = ref[static_cast<int64_t>(prompt.size() + j - 1)];
    const TokenLogprob& lp = run.logprobs[j];
    EXPECT_EQ(lp.token, run.tokens[j]);
    EXPECT_NEAR(lp.logprob, row[lp.token].item<float>(), 1e-4) << "token " << j;
    ASSERT_EQ(static_cast<int>(lp.top.size()), top);
    const auto best = std::get<1>(row.topk(top));
    for (int k = 0; k < top; ++k) {
      EXPECT_NEAR(lp.top[k].second, row[lp.top[k].first].item<float>(), 1e-4);
      EXPECT_NEAR(lp.top[k].second, row[best[k].item<int64_t>()].item<float>(), 1e-4);
    }
  }
}

class EngineLogprobs : public ::testing::TestWithParam<int> {};

TEST_P(EngineLogprobs, EqualAnOfflineForwardAtEveryBatchSize) {
  const int batch = GetParam();
  auto t = plain_model();
  EngineConfig cfg;
  cfg.max_batched_tokens = 48;  // prompts of 40-70 tokens prefill in chunks over several blocks
  auto e = make_engine(t, cfg);
  std::vector<std::vector<int>> prompts;
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int i = 0; i < batch; ++i) {
    prompts.push_back(random_tokens(40 + (i * 7) % 31, 100 + i));
    hs.push_back(e->submit(sampled(prompts.back(), 6, 1 + i, 3)));
  }
  for (int i = 0; i < batch; ++i) expect_matches_offline(t, prompts[i], collect(*hs[i]), 3);
}

INSTANTIATE_TEST_SUITE_P(Batch, EngineLogprobs, ::testing::Values(1, 4, 16));

TEST(EngineLogprobsCache, AfterAPrefixCacheHitTheyStillEqualTheOfflineForward) {
  auto t = plain_model();
  auto e = make_engine(t);
  const auto prompt = random_tokens(53, 9);
  collect(*e->submit(sampled(prompt, 2, 1, 0)));
  const Outcome second = collect(*e->submit(sampled(prompt, 5, 2, 2)));
  EXPECT_EQ(second.last.cached_prompt_tokens, 48);
  expect_matches_offline(t, prompt, second, 2);
}

TEST(EngineLogprobsCache, EchoScoresEveryPromptTokenEvenWhenTheBlocksAreCached) {
  auto t = plain_model();
  EngineConfig cfg;
  cfg.max_batched_tokens = 20;  // chunked prefill
  auto e = make_engine(t, cfg);
  const auto prompt = random_tokens(61, 4);
  collect(*e->submit(sampled(prompt, 1, 1, -1)));  // warms the prefix cache
  GenerationRequest r = sampled(prompt, 0, 1, 2);
  r.sampling.prompt_logprobs = true;
  const Outcome run = collect(*e->submit(r));
  EXPECT_EQ(run.last.finish, FinishReason::kLength);
  EXPECT_EQ(run.last.completion_tokens, 0);
  EXPECT_TRUE(run.tokens.empty());
  EXPECT_EQ(run.last.cached_prompt_tokens, 0);  // recomputed, so every position has logits
  ASSERT_EQ(run.prompt_logprobs.size(), prompt.size());
  EXPECT_TRUE(std::isnan(run.prompt_logprobs[0].logprob));
  const auto ref = offline_logprobs(t, prompt);
  for (size_t i = 1; i < prompt.size(); ++i) {
    EXPECT_EQ(run.prompt_logprobs[i].token, prompt[i]);
    EXPECT_NEAR(run.prompt_logprobs[i].logprob, ref[i - 1][prompt[i]].item<float>(), 1e-4) << i;
    EXPECT_EQ(run.prompt_logprobs[i].top.size(), 2u);
  }
}

TEST(EngineFork, NSamplesShareThePromptAndEqualEachAlone) {
  auto t = plain_model();
  const auto prompt = random_tokens(50, 12);
  std::vector<std::vector<int>> alone;
  {
    EngineConfig cfg;
    cfg.enable_prefix_cache = false;
    auto e = make_engine(t, cfg);
    for (int k = 0; k < 4; ++k)
      alone.push_back(collect(*e->submit(sampled(prompt, 8, 30 + k, -1))).tokens);
  }
  auto e = make_engine(t);
  auto hs = e->submit_n(sampled(prompt, 8, 30, -1), 4);
  ASSERT_EQ(hs.size(), 4u);
  std::vector<Outcome> runs;
  for (auto& h : hs) runs.push_back(collect(*h));
  for (int k = 0; k < 4; ++k) EXPECT_EQ(runs[k].tokens, alone[k]) << k;
  EXPECT_EQ(runs[0].last.cached_prompt_tokens, 0);
  for (int k = 1; k < 4; ++k) EXPECT_EQ(runs[k].last.cached_prompt_tokens, 48) << k;
  // Leader's 50 prompt tokens, then 3 followers' last 2 each.
  EXPECT_EQ(e->stats().prefix_cache_hits, 3u * 48u);
}

// The engine's test vocabulary: ids < 256 are bytes, the others "<id>"; </s> (3) is special.
std::shared_ptr<const grammar::TokenVocab> byte_vocab(int V) {
  std::vector<std::string> bytes(V);
  std::vector<bool> special(V, false);
  for (int i = 0; i < V; ++i)
    bytes[i] = i < 256 ? std::string(1, static_cast<char>(i)) : "<" + std::to_string(i) + ">";
  special[3] = true;
  return std::make_shared<const grammar::TokenVocab>(std::move(bytes), std::move(special));
}

TEST(EngineGrammar, EverySampledTextIsASentenceOfTheGrammar) {
  auto t = plain_model();
  auto e = make_engine(t);
  auto vocab = byte_vocab(testing::engine_tiny_config().vocab_size);
  auto g = grammar::CompiledGrammar::compile(
      "root ::= \"{\\\"n\\\": \" [0-9]{1,3} \", \\\"s\\\": \\\"\" [a-z<>0-9]{0,6} \"\\\"}\"\n",
      vocab);
  const std::regex sentence(R"(\{"n": [0-9]{1,3}, "s": "[a-z<>0-9]{0,6}"\})");
  for (float temp : {0.0f, 1.0f}) {
    for (int i = 0; i < 6; ++i) {
      GenerationRequest r = sampled(random_tokens(9, 50 + i), 64, 7 + i, 1);
      r.sampling.temperature = temp;
      r.sampling.top_k = i % 2 ? 40 : 0;  // the masked-first path too
      r.grammar = g;
      const Outcome run = collect(*e->submit(r));
      EXPECT_EQ(run.last.finish, FinishReason::kStop) << run.text << run.last.error;
      EXPECT_TRUE(std::regex_match(run.text, sentence)) << run.text;
      ASSERT_EQ(run.logprobs.size(), run.tokens.size());  // raw log-probabilities, unmasked
    }
  }
}

}  // namespace
}  // namespace ktl
