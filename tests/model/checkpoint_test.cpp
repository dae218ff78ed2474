// Checkpoint directories: bit-identical round trip, atomic replacement, clear errors on damage.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

using testing::TempDir;

class CheckpointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir("ktl-ckpt");
    tok_ = testing::make_tiny_tokenizer(tmp_->path() + "/tok");
  }
  static void TearDownTestSuite() { delete tmp_; }
  static TempDir* tmp_;
  static std::string tok_;
};
TempDir* CheckpointTest::tmp_ = nullptr;
std::string CheckpointTest::tok_;

TEST_F(CheckpointTest, RoundTripIsBitIdentical) {
  const std::string dir = tmp_->path() + "/rt";
  testing::make_tiny_checkpoint(dir, tok_, 42);
  auto ck = load_checkpoint(dir);
  Transformer ref(ck.config);
  ref->init_weights(42);
  auto a = ref->named_parameters(), b = ck.model->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
  EXPECT_EQ(ck.tokenizer->vocab_size(), ck.config.vocab_size);
  EXPECT_FALSE(ck.meta.weights_sha256.empty());
  // Same logits from the reloaded model.
  torch::NoGradGuard ng;
  ref->eval();
  auto x = torch::randint(0, ck.config.vocab_size, {1, 8}, torch::kLong);
  EXPECT_TRUE(torch::equal(ref(x), ck.model(x)));
}

TEST_F(CheckpointTest, ConfigJsonUsesLlamaKeys) {
  const std::string dir = tmp_->path() + "/keys";
  testing::make_tiny_checkpoint(dir, tok_);
  const std::string cfg = read_file(dir + "/config.json");
  for (const char* key :
       {"\"model_type\": \"llama\"", "\"num_hidden_layers\"", "\"num_key_value_heads\"",
        "\"max_position_embeddings\"", "\"LlamaForCausalLM\""})
    EXPECT_NE(cfg.find(key), std::string::npos) << key;
}

TEST_F(CheckpointTest, TruncatedWeightsAreRefused) {
  const std::string dir = tmp_->path() + "/trunc";
  testing::make_tiny_checkpoint(dir, tok_);
  const auto w = dir + "/model.safetensors";
  std::filesystem::resize_file(w, std::filesystem::file_size(w) / 2);
  try {
    load_checkpoint(dir);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
  // Without the checksum the safetensors validation itself must catch it.
  EXPECT_THROW(load_checkpoint(dir, torch::kCPU, /*verify_sha256=*/false), std::runtime_error);
}

TEST_F(CheckpointTest, FlippedByteFailsChecksum) {
  const std::string dir = tmp_->path() + "/flip";
  testing::make_tiny_checkpoint(dir, tok_);
  const auto w = dir + "/model.safetensors";
  std::fstream f(w, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(-5, std::ios::end);
  f.put('\x7f');
  f.close();
  try {
    load_checkpoint(dir);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
  }
}

TEST_F(CheckpointTest, IncompleteCheckpointIsRefused) {
  const std::string dir = tmp_->path() + "/incomplete";
  testing::make_tiny_checkpoint(dir, tok_);
  std::filesystem::remove(dir + "/meta.json");
  EXPECT_THROW(load_checkpoint(dir), std::runtime_error);
  EXPECT_THROW(load_checkpoint(tmp_->path() + "/does-not-exist"), std::runtime_error);
}

TEST_F(CheckpointTest, OverwriteKeepsAValidCheckpoint) {
  const std::string dir = tmp_->path() + "/over";
  testing::make_tiny_checkpoint(dir, tok_, 1);
  testing::make_tiny_checkpoint(dir, tok_, 2);
  auto ck = load_checkpoint(dir);
  Transformer ref(ck.config);
  ref->init_weights(2);
  EXPECT_TRUE(torch::equal(ref->embed_tokens->weight, ck.model->embed_tokens->weight));
  for (auto& e : std::filesystem::directory_iterator(tmp_->path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

}  // namespace
}  // namespace ktl
