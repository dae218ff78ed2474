// Strict YAML configs: shipped configs load, unknown keys and wrong types name the key.
#include <gtest/gtest.h>

#include <fstream>

#include "core/model/model_config.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

std::string write_yaml(const testing::TempDir& d, const std::string& body) {
  const std::string p = d / "c.yaml";
  std::ofstream(p) << body;
  return p;
}

TEST(ModelConfig, ShippedConfigsLoad) {
  auto small = load_model_config_yaml(std::string(KTL_SOURCE_DIR) + "/configs/model_small.yaml");
  EXPECT_EQ(small.vocab_size, 32000);
  EXPECT_EQ(small.hidden_size, 768);
  EXPECT_EQ(small.num_layers, 12);
  EXPECT_EQ(small.num_heads, 12);
  EXPECT_EQ(small.num_kv_heads, 4);
  EXPECT_EQ(small.intermediate_size, 2048);
  EXPECT_EQ(small.max_seq_length, 1024);
  EXPECT_DOUBLE_EQ(small.rope_theta, 10000.0);
  auto tiny = load_model_config_yaml(std::string(KTL_SOURCE_DIR) + "/configs/model_tiny.yaml");
  EXPECT_LT(tiny.num_parameters(), 10'000'000);
  EXPECT_GT(tiny.num_parameters(), 1'000'000);
}

TEST(ModelConfig, UnknownKeyIsNamed) {
  testing::TempDir d;
  try {
    load_model_config_yaml(write_yaml(d, "hidden_size: 64\nhiden_layers: 3\n"));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'hiden_layers'"), std::string::npos) << e.what();
  }
}

TEST(ModelConfig, WrongTypeIsNamed) {
  testing::TempDir d;
  try {
    load_model_config_yaml(write_yaml(d, "num_layers: twelve\n"));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("key 'num_layers'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_model_config_yaml(write_yaml(d, "tie_word_embeddings: maybe\n")), std::runtime_error);
  EXPECT_THROW(load_model_config_yaml(write_yaml(d, "rope_theta: [1, 2]\n")), std::runtime_error);
}

TEST(ModelConfig, InconsistentShapesAreRefused) {
  testing::TempDir d;
  EXPECT_THROW(load_model_config_yaml(write_yaml(d, "num_heads: 12\nnum_kv_heads: 5\n")), std::runtime_error);
  EXPECT_THROW(load_model_config_yaml(write_yaml(d, "hidden_size: 100\nnum_heads: 12\n")), std::runtime_error);
  EXPECT_THROW(load_model_config_yaml(d / "missing.yaml"), std::runtime_error);
}

}  // namespace
}  // namespace ktl
