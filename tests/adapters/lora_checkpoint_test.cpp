// LoRA training checkpoints (adapter-only directories naming their base) and switching an
// adapter off: save/load round trip through the base, the base's checksum check, the manifest
// check, merging on load, and LoraOffScope against the bare base.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/adapters/lora_adapter.h"
#include "core/adapters/lora_checkpoint.h"
#include "core/base/file_util.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

class LoraCheckpointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("ktl-lora-ckpt");
    tok_ = testing::make_tiny_tokenizer(dir_->path() + "/tok");
    testing::make_tiny_checkpoint(dir_->path() + "/base", tok_, 1);
    testing::make_tiny_checkpoint(dir_->path() + "/other", tok_, 2);
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override { torch::set_num_threads(1); }

  // The base with a trained-looking adapter (B random), saved as a LoRA checkpoint at `out`.
  static LoadedCheckpoint save_tuned(const std::string& out) {
    LoadedCheckpoint ck = load_checkpoint(dir_->path() + "/base");
    LoraConfig c;
    c.rank = 4;
    c.alpha = 8;
    c.dropout = 0;
    c.targets = parse_lora_targets("q,o,up");
    attach_lora(*ck.model, c, 3);
    torch::manual_seed(5);
    {
      torch::NoGradGuard g;
      for (auto& [name, p] : lora_named_parameters(*ck.model))
        if (name.find("lora_B") != std::string::npos) p.copy_(torch::randn(p.sizes()) * 0.1);
    }
    LoraAdapter a = extract_lora(*ck.model);
    a.config = c;
    CheckpointMeta meta;
    meta.step = 7;
    save_lora_checkpoint(out, ck.config, a, ck.tokenizer->model_bytes(),
                         lora_base_of(dir_->path() + "/base"), meta);
    return ck;
  }
  static TempDir* dir_;
  static std::string tok_;
};

TempDir* LoraCheckpointTest::dir_ = nullptr;
std::string LoraCheckpointTest::tok_;

TEST_F(LoraCheckpointTest, RoundTripsThroughItsBaseWithoutCopyingIt) {
  const std::string out = dir_->path() + "/tuned";
  LoadedCheckpoint want = save_tuned(out);
  EXPECT_TRUE(is_lora_checkpoint(out));
  EXPECT_FALSE(is_lora_checkpoint(dir_->path() + "/base"));
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
  const CheckpointMeta meta = read_checkpoint_meta(out);
  EXPECT_EQ(meta.step, 7);
  EXPECT_EQ(meta.weights_sha256, sha256_file_hex(out + "/adapter_model.safetensors"));
  EXPECT_TRUE(meta.file_sha256.count("lora_base.json"));
  EXPECT_TRUE(verify_checkpoint_files(out).empty());
  const LoraBaseRef ref = read_lora_base(out);
  EXPECT_EQ(ref.base, fs::absolute(dir_->path() + "/base").string());
  EXPECT_EQ(ref.weights_sha256, read_checkpoint_meta(dir_->path() + "/base").weights_sha256);

  LoadedCheckpoint got = load_lora_checkpoint(out);
  EXPECT_EQ(got.meta.step, 7);
  EXPECT_TRUE(has_lora(*got.model));
  auto tokens = torch::randint(0, 512, {2, 12});
  want.model->eval(), got.model->eval();
  EXPECT_TRUE(torch::equal(got.model->forward(tokens), want.model->forward(tokens)));
  // Merged on load: an ordinary model with (nearly) the same logits.
  bool was_lora = false;
  LoadedCheckpoint merged = load_checkpoint_merging_lora(out, torch::kCPU, true, &was_lora);
  EXPECT_TRUE(was_lora);
  EXPECT_FALSE(has_lora(*merged.model));
  EXPECT_TRUE(torch::allclose(merged.model->forward(tokens), want.model->forward(tokens), 1e-4,
                              1e-5));
  // load_checkpoint says what the directory is instead of a missing file.
  try {
    load_checkpoint(out);
    FAIL() << "loaded an adapter-only checkpoint as a model";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("LoRA adapter checkpoint"), std::string::npos)
        << e.what();
  }
}

TEST_F(LoraCheckpointTest, AnotherBaseOrAChangedFileIsRefused) {
  const std::string out = dir_->path() + "/tuned2";
  save_tuned(out);
  try {
    load_lora_checkpoint(out, torch::kCPU, true, dir_->path() + "/other");
    FAIL() << "accepted another base";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not the same base model"), std::string::npos)
        << e.what();
  }
  {
    std::fstream f(out + "/adapter_model.safetensors", std::ios::in | std::ios::out |
                                                           std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  try {
    load_lora_checkpoint(out);
    FAIL() << "accepted a corrupt adapter";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("adapter_model.safetensors: checksum mismatch"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(load_lora_checkpoint(out, torch::kCPU, /*verify_sha256=*/false));
  // A PEFT directory without lora_base.json needs the base named.
  const std::string peft = dir_->path() + "/peft";
  LoadedCheckpoint ck = load_checkpoint(dir_->path() + "/base");
  LoraConfig c;
  c.rank = 2;
  attach_lora(*ck.model, c, 1);
  save_peft_adapter(peft, extract_lora(*ck.model));
  EXPECT_TRUE(is_lora_checkpoint(peft));
  EXPECT_THROW(load_lora_checkpoint(peft), std::runtime_error);
  EXPECT_TRUE(has_lora(*load_lora_checkpoint(peft, torch::kCPU, true, dir_->path() + "/base").model));
}

TEST_F(LoraCheckpointTest, LoraOffScopeGivesTheBaseAndRestoresTheAdapter) {
  LoadedCheckpoint tuned = save_tuned(dir_->path() + "/tuned3");
  LoadedCheckpoint base = load_checkpoint(dir_->path() + "/base");
  auto tokens = torch::randint(0, 512, {2, 10});
  tuned.model->train();  // the scope must also skip the adapter's dropout
  for (auto i : {0, 1})
    lora_projection(*tuned.model->block(i), LoraTarget::kQ)->lora_dropout = 0.5;
  const auto with = [&] {
    tuned.model->eval();
    auto y = tuned.model->forward(tokens);
    tuned.model->train();
    return y;
  }();
  {
    LoraOffScope off(*tuned.model);
    EXPECT_TRUE(torch::equal(tuned.model->forward(tokens), base.model->forward(tokens)));
  }
  tuned.model->eval();
  EXPECT_TRUE(torch::equal(tuned.model->forward(tokens), with));
  EXPECT_FALSE(torch::equal(with, base.model->forward(tokens)));
}

}  // namespace
}  // namespace ktl
