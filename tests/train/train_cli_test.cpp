// `ktl train` / `ktl eval` end to end through the binary: flags, overrides, SIGTERM, resume.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/base/thread_policy.h"
#include "core/data/token_shard.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/cli_process.h"
#include "tests/support/korean_fixture.h"

namespace fs = std::filesystem;

namespace {

using ktl::cli_process::ktl_bin;
using ktl::cli_process::slurp;
using ktl::cli_process::spawn;
using ktl::cli_process::wait_exit;

// A fresh temp directory removed by the destructor (tests/support/tiny_checkpoint.h has the same
// helper, but it pulls in LibTorch headers this test does not need).
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    std::string tmpl = (fs::temp_directory_path() / (tag + "-XXXXXX")).string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string make_tokenizer(const std::string& dir) {
  fs::create_directories(dir);
  ktl::testing::write_lines(dir + "/corpus.txt", ktl::testing::korean_sentences(3000));
  ktl::TokenizerTrainOptions o;
  o.input_files = {dir + "/corpus.txt"};
  o.model_prefix = dir + "/tokenizer";
  o.vocab_size = 512;
  o.character_coverage = 0.99;
  o.input_sentence_size = 0;
  ktl::train_tokenizer(o);
  return dir + "/tokenizer.model";
}

class TrainCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(ktl_bin())) return;
    dir_ = new TempDir("ktl-train-cli");
    data_ = dir_->path() + "/data";
    const std::string model = make_tokenizer(data_);
    auto tok = ktl::Tokenizer::load(model);
    for (const char* split : {"train", "val"}) {
      ktl::TokenShardWriter w(data_ + "/" + split + ".bin", uint32_t(tok->vocab_size()));
      for (const auto& s : ktl::testing::korean_sentences(split[0] == 't' ? 800 : 100, split[0]))
        w.add_document(tok->encode(s), s.size() / 3);
      w.finish();
    }
    std::ofstream(dir_->path() + "/model.yaml")
        << "vocab_size: 320\nhidden_size: 32\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n"
           "intermediate_size: 64\nmax_seq_length: 64\n";
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "ktl binary not built";
  }
  std::vector<std::string> base_args(const std::string& out) {
    return {"train",
            "--model-config",
            dir_->path() + "/model.yaml",
            "--data",
            data_,
            "--output-dir",
            out,
            "--batch-size",
            "2",
            "--max-seq-length",
            "32",
            "--num-threads",
            "1",
            "--eval-batches",
            "2",
            "--sample-steps",
            "0",
            "--warmup-steps",
            "2",
            "--log-steps",
            "1"};
  }
  static TempDir* dir_;
  static std::string data_;
};

TempDir* TrainCliTest::dir_ = nullptr;
std::string TrainCliTest::data_;

TEST_F(TrainCliTest, UnknownFlagAndBadValueExitTwo) {
  const std::string log = dir_->path() + "/bad.log";
  EXPECT_EQ(
      wait_exit(spawn({"train", "--data", data_, "--output-dir", "x", "--max-stepz", "3"}, log)),
      2);
  EXPECT_NE(slurp(log).find("--max-stepz"), std::string::npos) << slurp(log);
  EXPECT_EQ(
      wait_exit(spawn({"train", "--data", data_, "--output-dir", "x", "--max-steps", "many"}, log)),
      2);
  EXPECT_NE(slurp(log).find("max_steps"), std::string::npos) << slurp(log);
}

TEST_F(TrainCliTest, TrainsResumesAndEvaluates) {
  const std::string out = dir_->path() + "/run", log = dir_->path() + "/run.log";
  auto args = base_args(out);
  for (const char* a : {"--max-steps", "4", "--save-steps", "2", "--eval-steps", "2"})
    args.push_back(a);
  ASSERT_EQ(wait_exit(spawn(args, log)), 0) << slurp(log);
  const std::string text = slurp(log);
  EXPECT_NE(text.find("max_steps: 4"), std::string::npos);  // resolved config printed
  EXPECT_NE(text.find("step 4/4"), std::string::npos) << text;
  EXPECT_NE(text.find("val loss"), std::string::npos);
  // Each pool named and sized (core/base/thread_policy.h); base_args ask for one thread.
  EXPECT_NE(text.find("threads: LibTorch intra-op 1, OpenMP 1, OpenBLAS 1"), std::string::npos)
      << text;
  EXPECT_EQ(
      slurp(out + "/checkpoint-4/training_config.yaml").find("max_steps: 4") != std::string::npos,
      true);
  // Resume from step 2 and extend to 6 with an override.
  const std::string log2 = dir_->path() + "/resume.log";
  ASSERT_EQ(wait_exit(spawn({"train", "--resume-from", out + "/checkpoint-2", "--data", data_,
                             "--max-steps", "6", "--num-threads", "0"},
                            log2)),
            0)
      << slurp(log2);
  // 0 = every physical core.
  const std::string n = std::to_string(ktl::physical_cores());
  EXPECT_NE(
      slurp(log2).find("threads: LibTorch intra-op " + n + ", OpenMP " + n + ", OpenBLAS " + n),
      std::string::npos)
      << slurp(log2);
  EXPECT_NE(slurp(log2).find("resumed from"), std::string::npos);
  EXPECT_NE(slurp(log2).find("step 6/6"), std::string::npos) << slurp(log2);
  EXPECT_EQ(fs::read_symlink(out + "/latest").string(), "checkpoint-6");
  const std::string log3 = dir_->path() + "/eval.log";
  ASSERT_EQ(wait_exit(spawn({"eval", "--model", out + "/latest", "--data", data_, "--split", "val",
                             "--max-batches", "2", "--batch-size", "2", "--max-seq-length", "32"},
                            log3)),
            0)
      << slurp(log3);
  EXPECT_NE(slurp(log3).find("bits per character:"), std::string::npos);
  // Task accuracy by likelihood on a multiple-choice file: one JSON line.
  const std::string tasks = dir_->path() + "/tasks.jsonl", log4 = dir_->path() + "/task.log";
  std::ofstream(tasks)
      << R"({"context": "나는 학교에서", "choices": [" 책을", " 밥을"], "gold": 0})"
      << "\n"
      << R"({"context": "우리는", "choices": [" 커피를", " 영화를"], "gold": 1})"
      << "\n";
  ASSERT_EQ(wait_exit(spawn({"eval", "--model", out + "/latest", "--task", "mc", "--task-data",
                             tasks, "--json"},
                            log4)),
            0)
      << slurp(log4);
  EXPECT_NE(slurp(log4).find(R"({"task": "mc", "n": 2, "acc": )"), std::string::npos)
      << slurp(log4);
  EXPECT_NE(wait_exit(spawn({"eval", "--model", out + "/latest", "--task", "mc"}, log4)), 0);
  EXPECT_NE(slurp(log4).find("--task mc needs --task-data"), std::string::npos) << slurp(log4);
}

TEST_F(TrainCliTest, SigtermSavesACheckpointAndExitsZero) {
  const std::string out = dir_->path() + "/sig", log = dir_->path() + "/sig.log";
  auto args = base_args(out);
  for (const char* a : {"--max-steps", "100000", "--save-steps", "0", "--eval-steps", "0"})
    args.push_back(a);
  pid_t pid = spawn(args, log);
  // Wait for the first progress line, then ask it to stop.
  for (int i = 0; i < 300 && slurp(log).find("step 2/") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_NE(slurp(log).find("step 2/"), std::string::npos) << slurp(log);
  kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit(pid), 0) << slurp(log);
  EXPECT_NE(slurp(log).find("stopped at step"), std::string::npos) << slurp(log);
  ASSERT_TRUE(fs::is_symlink(out + "/latest"));
  EXPECT_TRUE(fs::exists(out + "/latest/optimizer.safetensors"));
}

}  // namespace
