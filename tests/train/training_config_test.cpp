// TrainingConfig (strict YAML + overrides) and the learning-rate schedule. No LibTorch.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/train/lr_schedule.h"
#include "core/train/training_config.h"

namespace {

std::string write_tmp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(TrainingConfig, LoadsTheShippedConfig) {
  auto c = ktl::load_training_config(std::string(KTL_SOURCE_DIR) + "/configs/training.yaml");
  EXPECT_GT(c.batch_size, 0);
  EXPECT_GT(c.max_steps, 0);
  EXPECT_TRUE(c.bf16 == "auto" || c.bf16 == "true" || c.bf16 == "false");
}

TEST(TrainingConfig, LoadsTheShippedRecipes) {
  // configs/recipes/<name>.yaml are training configs (their <name>.model.yaml, if any, is a model
  // config: tests/model); the quickstart job trains with tiny.yaml.
  int n = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(KTL_SOURCE_DIR) + "/configs/recipes")) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() != ".yaml" || name.find(".model.") != std::string::npos) continue;
    SCOPED_TRACE(name);
    auto c = ktl::load_training_config(e.path().string());
    EXPECT_GT(c.learning_rate, 0);
    EXPECT_EQ(c.num_threads, 0);  // a recipe must not pin one machine's thread count
    ++n;
  }
  EXPECT_GE(n, 2);
}

TEST(TrainingConfig, UnknownKeyAndWrongTypeNameTheKey) {
  const auto bad_key = write_tmp("tc_bad_key.yaml", "batch_size: 4\nlearning_rat: 0.1\n");
  try {
    ktl::load_training_config(bad_key);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("learning_rat"), std::string::npos) << e.what();
  }
  const auto bad_type = write_tmp("tc_bad_type.yaml", "max_steps: lots\n");
  try {
    ktl::load_training_config(bad_type);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("max_steps"), std::string::npos) << e.what();
  }
  const auto bad_bf16 = write_tmp("tc_bad_bf16.yaml", "bf16: maybe\n");
  EXPECT_THROW(ktl::load_training_config(bad_bf16), std::runtime_error);
  const auto invalid = write_tmp("tc_invalid.yaml", "min_learning_rate: 1.0\nlearning_rate: 0.1\n");
  EXPECT_THROW(ktl::load_training_config(invalid), std::runtime_error);
}

TEST(TrainingConfig, OverridesAndYamlRoundTrip) {
  ktl::TrainingConfig c;
  ktl::set_training_key(c, ktl::training_key_from_flag("max-steps"), "200");
  ktl::set_training_key(c, "bf16", "false");
  ktl::set_training_key(c, "learning_rate", "3e-4");
  ktl::set_training_key(c, "gradient_checkpointing", "true");
  EXPECT_EQ(c.max_steps, 200);
  EXPECT_EQ(c.bf16, "false");
  EXPECT_DOUBLE_EQ(c.learning_rate, 3e-4);
  EXPECT_TRUE(c.gradient_checkpointing);
  EXPECT_THROW(ktl::set_training_key(c, "max_steps", "x"), std::invalid_argument);
  EXPECT_THROW(ktl::set_training_key(c, "no_such_key", "1"), std::invalid_argument);
  EXPECT_EQ(ktl::training_key_from_flag("no-such-key"), "");

  const auto path = write_tmp("tc_roundtrip.yaml", c.to_yaml());
  auto back = ktl::load_training_config(path);
  EXPECT_EQ(back.to_yaml(), c.to_yaml());
  EXPECT_EQ(back.max_steps, 200);
  // Every key appears in the dump.
  for (const auto& k : ktl::training_config_keys())
    EXPECT_NE(c.to_yaml().find(k + ":"), std::string::npos) << k;
}

TEST(LrSchedule, WarmupThenCosineToFloor) {
  ktl::LrSchedule s(1e-3, 1e-4, 10, 110);
  EXPECT_NEAR(s.at(0), 1e-4, 1e-12);  // 1/10 of the peak
  EXPECT_NEAR(s.at(4), 5e-4, 1e-12);
  EXPECT_NEAR(s.at(9), 1e-3, 1e-12);                // warmup ends at the peak
  EXPECT_NEAR(s.at(10), 1e-3, 1e-12);               // cosine starts at the peak
  EXPECT_NEAR(s.at(60), 1e-4 + 0.5 * 9e-4, 1e-12);  // halfway
  EXPECT_NEAR(s.at(35), 1e-4 + 0.5 * (1 + std::cos(M_PI * 0.25)) * 9e-4, 1e-12);
  EXPECT_NEAR(s.at(110), 1e-4, 1e-12);
  EXPECT_NEAR(s.at(500), 1e-4, 1e-12);
  for (int i = 10; i < 110; ++i) EXPECT_LE(s.at(i + 1), s.at(i)) << i;
  ktl::LrSchedule no_warmup(1e-3, 0.0, 0, 100);
  EXPECT_NEAR(no_warmup.at(0), 1e-3, 1e-12);
}

TEST(LrSchedule, ByProgressWarmsUpByStepThenFollowsTheShareOfTheBudget) {
  ktl::LrSchedule s(1e-3, 1e-4, 10, 110);
  EXPECT_NEAR(s.at_progress(4, 0.9), s.at(4), 1e-12);  // warmup ignores the time
  EXPECT_NEAR(s.at_progress(50, 0.0), 1e-3, 1e-12);
  EXPECT_NEAR(s.at_progress(50, 0.5), 1e-4 + 0.5 * 9e-4, 1e-12);
  EXPECT_NEAR(s.at_progress(50, 1.0), 1e-4, 1e-12);
  EXPECT_NEAR(s.at_progress(50, 3.0), 1e-4, 1e-12);  // clamped: past the budget, the floor
  for (int i = 0; i < 100; ++i)
    EXPECT_NEAR(s.at_progress(10 + i, i / 100.0), s.at(10 + i), 1e-12) << i;  // same curve
}

TEST(TrainingConfig, MaxMinutesParsesAndRefusesNegative) {
  ktl::TrainingConfig c;
  EXPECT_EQ(c.max_minutes, 0);
  ktl::set_training_key(c, "max_minutes", "60");
  EXPECT_EQ(c.max_minutes, 60);
  EXPECT_NE(c.to_yaml().find("max_minutes: 60"), std::string::npos);
  c.max_minutes = -1;
  EXPECT_THROW(c.validate(), std::invalid_argument);
}

TEST(TrainingConfig, LoraKeysParseRoundTripAndValidate) {
  ktl::TrainingConfig c;
  EXPECT_EQ(c.lora_rank, 0);  // off unless asked
  EXPECT_FALSE(ktl::lora_config_of(c).enabled());
  EXPECT_EQ(ktl::training_key_from_flag("lora-rank"), "lora_rank");
  EXPECT_EQ(ktl::training_key_from_flag("lora-targets"), "lora_targets");
  ktl::set_training_key(c, "lora_rank", "8");
  ktl::set_training_key(c, "lora_alpha", "16");
  ktl::set_training_key(c, "lora_dropout", "0.1");
  ktl::set_training_key(c, "lora_targets", "v_proj, q,down");
  c.validate();
  const ktl::LoraConfig l = ktl::lora_config_of(c);
  EXPECT_EQ(l.rank, 8);
  EXPECT_DOUBLE_EQ(l.scale(), 2.0);
  EXPECT_DOUBLE_EQ(l.dropout, 0.1);
  const std::vector<ktl::LoraTarget> want = {ktl::LoraTarget::kQ, ktl::LoraTarget::kV,
                                             ktl::LoraTarget::kDown};
  EXPECT_EQ(l.targets, want);  // block order whatever the spelling
  ktl::TrainingConfig back;
  ktl::load_training_config_into(write_tmp("tc_lora.yaml", c.to_yaml()), back);
  EXPECT_EQ(back.to_yaml(), c.to_yaml());
  auto refused = [](const std::string& key, const std::string& value) {
    ktl::TrainingConfig x;
    ktl::set_training_key(x, key, value);
    try {
      x.validate();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what()).find("training config: " + key + ": ") == 0;
    }
    return false;
  };
  EXPECT_TRUE(refused("lora_rank", "-1"));
  EXPECT_TRUE(refused("lora_alpha", "0"));
  EXPECT_TRUE(refused("lora_dropout", "1"));
  EXPECT_TRUE(refused("lora_targets", "q,wq"));
  EXPECT_TRUE(refused("lora_targets", ""));
}

}  // namespace
