// Checkpoint directories: bit-identical round trip, atomic replacement, clear errors on damage.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

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


// --- The file manifest: every file is checksummed, any damaged one is named. ---

namespace fs = std::filesystem;

// A checkpoint with the trainer's kind of extras (and one in a subdirectory).
void make_full_checkpoint(const std::string& dir, const std::string& tok) {
  auto t = Tokenizer::load(tok);
  Transformer model(testing::tiny_model_config(t->vocab_size()));
  model->init_weights(3);
  save_checkpoint(dir, *model, t->model_bytes(), CheckpointMeta{}, [](const std::string& tmp) {
    write_file_atomic(fs::path(tmp) / "optimizer.safetensors", std::string(4096, '\x01'));
    write_file_atomic(fs::path(tmp) / "trainer_state.json", "{\"step\": 0}\n");
    write_file_atomic(fs::path(tmp) / "training_config.yaml", "lr: 0.001\n");
    fs::create_directories(fs::path(tmp) / "extra");
    write_file_atomic(fs::path(tmp) / "extra" / "notes.txt", "hello\n");
  });
}

std::set<std::string> files_below(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.insert(fs::relative(e.path(), dir).generic_string());
  return out;
}

void flip_byte(const fs::path& file, std::streamoff at) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  const char c = static_cast<char>(f.get());
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0x20));
}

std::string load_error(const std::string& dir, bool verify = true) {
  try {
    load_checkpoint(dir, torch::kCPU, verify);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST_F(CheckpointTest, ManifestCoversEveryFile) {
  const std::string dir = tmp_->path() + "/manifest";
  make_full_checkpoint(dir, tok_);
  const CheckpointMeta meta = read_checkpoint_meta(dir);
  std::set<std::string> listed;
  for (const auto& [name, sha] : meta.file_sha256) {
    listed.insert(name);
    EXPECT_EQ(sha, sha256_file_hex(fs::path(dir) / name)) << name;
  }
  std::set<std::string> want = files_below(dir);
  want.erase("meta.json");
  EXPECT_EQ(listed, want);
  for (const char* f : {"config.json", "tokenizer.model", "generation_config.json",
                        "model.safetensors", "optimizer.safetensors", "trainer_state.json",
                        "training_config.yaml", "extra/notes.txt"})
    EXPECT_EQ(listed.count(f), 1u) << f;
  EXPECT_EQ(meta.weights_sha256, meta.file_sha256.at("model.safetensors"));  // older readers
  EXPECT_TRUE(verify_checkpoint_files(dir).empty());
}

TEST_F(CheckpointTest, AFlippedByteInAnyFileIsNamed) {
  const std::string src = tmp_->path() + "/flip-src";
  make_full_checkpoint(src, tok_);
  for (const auto& [name, sha] : read_checkpoint_meta(src).file_sha256) {
    const std::string dir = tmp_->path() + "/flip-one";
    fs::remove_all(dir);
    fs::copy(src, dir, fs::copy_options::recursive);
    const fs::path file = fs::path(dir) / name;
    flip_byte(file, static_cast<std::streamoff>(fs::file_size(file) / 2));
    const std::string err = load_error(dir);
    EXPECT_NE(err.find(file.string()), std::string::npos) << name << ": " << err;
    EXPECT_NE(err.find("checksum mismatch"), std::string::npos) << name << ": " << err;
    const auto problems = verify_checkpoint_files(dir);
    ASSERT_EQ(problems.size(), 1u) << name;
    EXPECT_NE(problems[0].find(file.string()), std::string::npos) << problems[0];
  }
}

TEST_F(CheckpointTest, AMissingListedFileIsNamed) {
  const std::string dir = tmp_->path() + "/missing-file";
  make_full_checkpoint(dir, tok_);
  fs::remove(fs::path(dir) / "generation_config.json");
  const std::string err = load_error(dir, /*verify=*/false);  // presence is checked either way
  EXPECT_NE(err.find("generation_config.json: missing"), std::string::npos) << err;
}

TEST_F(CheckpointTest, NoVerifySkipsTheChecksums) {
  const std::string dir = tmp_->path() + "/no-verify";
  make_full_checkpoint(dir, tok_);
  const fs::path w = fs::path(dir) / "model.safetensors";
  flip_byte(w, static_cast<std::streamoff>(fs::file_size(w) - 3));  // inside a float
  EXPECT_NE(load_error(dir).find("checksum mismatch"), std::string::npos);
  EXPECT_EQ(load_error(dir, /*verify=*/false), "");
  EXPECT_EQ(verify_checkpoint_files(dir, /*check_hashes=*/false).size(), 0u);
}

// Checkpoints written before the manifest: the weights' checksum alone is checked.
TEST_F(CheckpointTest, OldCheckpointWithoutManifestLoads) {
  const std::string dir = tmp_->path() + "/old-format";
  make_full_checkpoint(dir, tok_);
  const fs::path meta = fs::path(dir) / "meta.json";
  auto j = nlohmann::json::parse(read_file(meta));
  j.erase("files");
  write_file_atomic(meta, j.dump(2));
  EXPECT_TRUE(read_checkpoint_meta(dir).file_sha256.empty());
  EXPECT_EQ(load_error(dir), "");
  flip_byte(fs::path(dir) / "training_config.yaml", 1);  // not covered without a manifest
  EXPECT_EQ(load_error(dir), "");
  const fs::path w = fs::path(dir) / "model.safetensors";
  flip_byte(w, static_cast<std::streamoff>(fs::file_size(w) - 3));
  EXPECT_NE(load_error(dir).find(w.string() + ": checksum mismatch"), std::string::npos);
}

}  // namespace
}  // namespace ktl
