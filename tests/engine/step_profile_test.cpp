// ktl bench --profile's timers (core/engine/step_profile.h): nested timers count exclusively,
// nothing is timed without an active profile, and an engine run's decode steps split into parts
// that add up to the step.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <thread>

#include "core/engine/engine_model.h"
#include "core/engine/llm_engine.h"
#include "core/engine/step_profile.h"
#include "tests/support/engine_fixture.h"

namespace ktl {
namespace {

using Clock = std::chrono::steady_clock;

double part(const StepProfile& p, StepPart s) {
  return p.part_ms[static_cast<int>(s)];
}

void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

TEST(StepProfile, NestedTimersCountOnlyTheirOwnTime) {
  StepProfile p;
  {
    StepProfileScope scope(&p);
    StepTimer matmul(StepPart::kMatmuls);
    sleep_ms(5);
    {
      StepTimer quant(StepPart::kQuantization);
      sleep_ms(20);
    }
  }
  EXPECT_EQ(p.steps, 1);
  EXPECT_GE(part(p, StepPart::kQuantization), 20.0);
  EXPECT_GE(part(p, StepPart::kMatmuls), 5.0);
  // The quantization's 20 ms are not also in matmuls: the parts add up to the step, once.
  EXPECT_LT(part(p, StepPart::kMatmuls), part(p, StepPart::kQuantization) + 5.0);
  EXPECT_GE(p.other_ms(), 0.0);
  EXPECT_LT(p.other_ms(), 1.0);  // the scope's own bookkeeping only
}

TEST(StepProfile, NothingIsTimedWithoutAnActiveProfile) {
  EXPECT_EQ(active_step_profile(), nullptr);
  StepProfile p;
  {
    StepProfileScope off(nullptr);
    StepTimer t(StepPart::kMatmuls);
    sleep_ms(2);
  }
  {
    StepProfileScope on(&p);
    EXPECT_EQ(active_step_profile(), &p);
  }
  EXPECT_EQ(active_step_profile(), nullptr);  // the scope gave the thread its previous state
  {
    StepTimer t(StepPart::kAttention);  // no scope at all
    sleep_ms(2);
  }
  EXPECT_EQ(p.steps, 1);
  for (double ms : p.part_ms) EXPECT_EQ(ms, 0.0);
}

std::shared_ptr<EngineModel> tiny_engine_model(WeightDtype d) {
  auto t = testing::margin_model();
  return std::make_shared<EngineModel>(EngineModel::from_module(*t, d));
}

// Runs `streams` greedy requests of `gen` tokens to the end.
void run(LlmEngine& e, int streams, int gen) {
  std::vector<std::shared_ptr<RequestHandle>> hs;
  for (int s = 0; s < streams; ++s) {
    GenerationRequest r;
    r.prompt_tokens = testing::random_tokens(6, 10 + s);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = gen;
    r.sampling.ignore_eos = true;
    hs.push_back(e.submit(std::move(r)));
  }
  for (auto& h : hs) {
    GenerationEvent ev;
    do {
      ASSERT_TRUE(h->next(&ev, std::chrono::milliseconds(30000)));
    } while (ev.finish == FinishReason::kNone);
  }
  // The last event goes out inside the last step; its profile is summed when the step ends,
  // before the stats that show no running sequence.
  for (int i = 0; i < 500 && e.stats().running != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

class EngineStepProfile : public ::testing::TestWithParam<WeightDtype> {};

TEST_P(EngineStepProfile, DecodeStepPartsAddUpToTheStep) {
  EngineConfig cfg;
  cfg.num_threads = 2;
  cfg.kv_cache_mb = 4;
  LlmEngine e(tiny_engine_model(GetParam()), nullptr, cfg, "tiny");
  e.set_step_profiling(true);
  const int gen = 8;
  const auto t0 = Clock::now();
  run(e, 1, gen);
  const double wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const StepProfile p = e.decode_step_profile();
  // The first token comes from the prefill step; each later one from a decode step of one row.
  EXPECT_EQ(p.steps, gen - 1);
  EXPECT_EQ(p.rows, gen - 1);
  EXPECT_GT(p.step_ms, 0.0);
  EXPECT_LE(p.step_ms, wall_ms);
  double sum = 0;
  for (int i = 0; i < kStepParts; ++i) {
    EXPECT_GE(p.part_ms[i], 0.0) << to_string(static_cast<StepPart>(i));
    sum += p.part_ms[i];
  }
  EXPECT_GE(p.other_ms(), 0.0);  // no time counted twice
  EXPECT_NEAR(sum + p.other_ms(), p.step_ms, 1e-6 * p.step_ms);
  EXPECT_GT(part(p, StepPart::kMatmuls), 0.0);
  EXPECT_GT(part(p, StepPart::kAttention), 0.0);
  EXPECT_GT(part(p, StepPart::kSampling), 0.0);
  EXPECT_GT(part(p, StepPart::kScheduling), 0.0);
  if (GetParam() == WeightDtype::kInt8)
    EXPECT_GT(part(p, StepPart::kQuantization), 0.0);
  else
    EXPECT_EQ(part(p, StepPart::kQuantization), 0.0);

  // Several streams: decode steps carry one row per stream; the reset starts the sums over.
  e.decode_step_profile(/*reset=*/true);
  run(e, 3, gen);
  const StepProfile q = e.decode_step_profile();
  EXPECT_GE(q.steps, gen - 1);
  EXPECT_GT(q.rows, q.steps);
}

TEST_P(EngineStepProfile, OffRecordsNothing) {
  EngineConfig cfg;
  cfg.num_threads = 2;
  cfg.kv_cache_mb = 4;
  LlmEngine e(tiny_engine_model(GetParam()), nullptr, cfg, "tiny");
  run(e, 2, 4);  // never switched on
  EXPECT_EQ(e.decode_step_profile().steps, 0);
  e.set_step_profiling(true);
  run(e, 1, 4);
  EXPECT_EQ(e.decode_step_profile().steps, 3);
  e.set_step_profiling(false);
  e.decode_step_profile(/*reset=*/true);
  run(e, 1, 4);
  const StepProfile p = e.decode_step_profile();
  EXPECT_EQ(p.steps, 0);
  EXPECT_EQ(p.step_ms, 0.0);
  for (double ms : p.part_ms) EXPECT_EQ(ms, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, EngineStepProfile,
                         ::testing::Values(WeightDtype::kFp32, WeightDtype::kInt8),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace ktl
