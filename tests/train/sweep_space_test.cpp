// sweep.yaml parsing, validation and trial generation. No LibTorch.
#include "core/train/sweep_space.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

namespace {

const char* kSpace = R"(method: random
trials: 12
seed: 7
budget_minutes: 5
halving: {min_steps: 20, max_steps: 150, eta: 2}
params:
  learning_rate: {min: 1.0e-4, max: 1.0e-2, log: true}
  warmup_steps: [10, 50]
  batch_size: {min: 2, max: 8}
  weight_decay: 0.05
  model.hidden_size: [64, 128]
)";

std::string error_of(const std::string& yaml) {
  try {
    ktl::parse_sweep_space(yaml, "s.yaml");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(SweepSpace, ParsesAndDrawsReproducibleTrialsInRange) {
  const auto s = ktl::parse_sweep_space(kSpace);
  EXPECT_EQ(s.halving.rungs(), (std::vector<int64_t>{20, 40, 80, 150}));
  const auto a = ktl::generate_trials(s), b = ktl::generate_trials(s);
  ASSERT_EQ(a.size(), 12u);
  std::set<std::string> lrs;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].overrides, b[i].overrides);
    const double lr = std::stod(a[i].overrides.at("learning_rate"));
    EXPECT_GE(lr, 1e-4 * 0.999);
    EXPECT_LE(lr, 1e-2 * 1.001);
    lrs.insert(a[i].overrides.at("learning_rate"));
    const int bs = std::stoi(a[i].overrides.at("batch_size"));  // an integer range
    EXPECT_GE(bs, 2);
    EXPECT_LE(bs, 8);
    EXPECT_EQ(a[i].overrides.at("weight_decay"), "0.05");
    ktl::TrainingConfig tc;
    ktl::ModelConfig mc;
    mc.hidden_size = 256, mc.num_heads = 8, mc.num_kv_heads = 4;
    ktl::apply_trial(a[i], s.halving, tc, mc);
    EXPECT_EQ(tc.max_steps, 150);
    EXPECT_EQ(std::to_string(mc.hidden_size), a[i].overrides.at("model.hidden_size"));
  }
  EXPECT_GT(lrs.size(), 8u);  // draws differ
}

TEST(SweepSpace, GridIsRowMajorAndCapped) {
  auto s = ktl::parse_sweep_space(
      "method: grid\ntrials: 0\nparams:\n  learning_rate: [1.0e-3, 2.0e-3]\n"
      "  warmup_steps: [10, 20, 30]\n");
  auto t = ktl::generate_trials(s);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[0].overrides.at("learning_rate"), "1.0e-3");
  EXPECT_EQ(t[0].overrides.at("warmup_steps"), "10");
  EXPECT_EQ(t[1].overrides.at("warmup_steps"), "20");
  EXPECT_EQ(t[3].overrides.at("learning_rate"), "2.0e-3");
  s.trials = 4;
  EXPECT_EQ(ktl::generate_trials(s).size(), 4u);
}

TEST(SweepSpace, BadInputNamesTheKey) {
  EXPECT_NE(error_of("params:\n  learning_rat: [1]\n").find("learning_rat"), std::string::npos);
  EXPECT_NE(error_of("params:\n  max_steps: [1]\n").find("max_steps"), std::string::npos);
  EXPECT_NE(error_of("params:\n  batch_size: [0]\n").find("batch_size"), std::string::npos);
  EXPECT_NE(error_of("params:\n  learning_rate: {min: 0, max: 1, log: true}\n").find("log"),
            std::string::npos);
  EXPECT_NE(error_of("method: grid\nparams:\n  learning_rate: {min: 0.1, max: 1}\n").find("grid"),
            std::string::npos);
  EXPECT_NE(error_of("halving: {min_steps: 100, max_steps: 10}\n").find("max_steps"),
            std::string::npos);
  EXPECT_NE(error_of("method: bayes\n").find("method"), std::string::npos);
  EXPECT_NE(error_of("params:\n  model.vocab: [1]\n").find("model.vocab"), std::string::npos);
  EXPECT_NE(error_of("colour: red\n").find("colour"), std::string::npos);
  EXPECT_NE(error_of("params: [1\n").find("s.yaml"), std::string::npos);
}

}  // namespace
