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
  // The 60-minute recipe's model: its size is what the guide's compute-optimal table chose.
  auto ko60 = load_model_config_yaml(std::string(KTL_SOURCE_DIR) +
                                     "/configs/recipes/ko-60min.model.yaml");
  EXPECT_EQ(ko60.num_parameters(), 3'971'520);
}

TEST(ModelConfig, UnknownKeyIsNamed) {
  testing::TempDir d;
  try {
    load_model_config_yaml(write_yaml(d, "hidden_size: 64\nhiden_layers: 3\n"));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'hiden_layers'"), std::string::npos)
        << e.what();
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
  EXPECT_THROW(load_model_config_yaml(write_yaml(d, "tie_word_embeddings: maybe\n")),
               std::runtime_error);
  EXPECT_THROW(load_model_config_yaml(write_yaml(d, "rope_theta: [1, 2]\n")), std::runtime_error);
}

TEST(ModelConfig, InconsistentShapesAreRefused) {
  testing::TempDir d;
  EXPECT_THROW(load_model_config_yaml(write_yaml(d, "num_heads: 12\nnum_kv_heads: 5\n")),
               std::runtime_error);
  EXPECT_THROW(load_model_config_yaml(write_yaml(d, "hidden_size: 100\nnum_heads: 12\n")),
               std::runtime_error);
  EXPECT_THROW(load_model_config_yaml(d / "missing.yaml"), std::runtime_error);
}

// A config.json with the seven required keys of a small model plus `extra` (JSON members).
std::string write_config_json(const testing::TempDir& d, const std::string& extra) {
  const std::string p = d / "config.json";
  std::ofstream(p) << R"({"vocab_size":8000,"hidden_size":256,"intermediate_size":704,)"
                   << R"("num_hidden_layers":6,"num_attention_heads":8,"num_key_value_heads":4,)"
                   << R"("max_position_embeddings":512)" << extra << "}";
  return p;
}

void expect_config_json_error(const std::string& extra, const std::string& needle) {
  testing::TempDir d;
  try {
    read_model_config_json(write_config_json(d, extra));
    FAIL() << "accepted" << extra;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ModelConfig, ConfigJsonLoads) {
  testing::TempDir d;
  auto c = read_model_config_json(
      write_config_json(d, R"(,"rope_theta":500000,"tie_word_embeddings":false)"));
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
}

// Found with the checkpoint_config fuzz target: a wrongly typed optional key threw
// nlohmann's type_error instead of the documented std::runtime_error naming the key.
TEST(ModelConfig, ConfigJsonWrongTypesAreNamed) {
  expect_config_json_error(R"(,"rope_theta":"big")", "'rope_theta' must be a number");
  expect_config_json_error(R"(,"rms_norm_eps":null)", "'rms_norm_eps' must be a number");
  expect_config_json_error(R"(,"tie_word_embeddings":1)",
                           "'tie_word_embeddings' must be true or false");
  expect_config_json_error(R"(,"vocab_size":8000.5)", "'vocab_size' must be an integer");
}

// Out-of-range integers were truncated by get<int>() (2^32 + 8000 read as 8000), and sizes
// that fit in int overflowed int64 in num_parameters() (UBSan, checkpoint_config fuzz target).
TEST(ModelConfig, ConfigJsonSizesAreBounded) {
  expect_config_json_error(R"(,"vocab_size":4294975296)",
                           "'vocab_size' must be an integer in the int range");
  expect_config_json_error(R"(,"num_hidden_layers":-4294967296)",
                           "'num_hidden_layers' must be an integer");
  expect_config_json_error(
      R"(,"hidden_size":1073741824,"num_attention_heads":2,"num_key_value_heads":1)",
      "hidden_size: must be <= 65536");
  expect_config_json_error(R"(,"num_hidden_layers":2147483647)", "num_layers: must be <= 4096");
  expect_config_json_error(R"(,"intermediate_size":2147483647)",
                           "intermediate_size: must be <= 1048576");
  expect_config_json_error(R"(,"vocab_size":2147483647)", "vocab_size: must be <= 16777216");
  ModelConfig big;  // the largest accepted sizes still count their parameters without overflow
  big.vocab_size = 1 << 24;
  big.hidden_size = 1 << 16;
  big.num_heads = big.num_kv_heads = 1 << 8;
  big.num_layers = 4096;
  big.intermediate_size = 1 << 20;
  big.max_seq_length = 1 << 24;
  EXPECT_NO_THROW(big.validate());
  EXPECT_GT(big.num_parameters(), int64_t(1) << 49);
}

}  // namespace
}  // namespace ktl
