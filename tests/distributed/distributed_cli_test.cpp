// `ktl train` as Gloo ranks on 127.0.0.1, end to end through the binary: two ranks end with the
// parameters of one process (same global batch), a two-rank checkpoint resumes on one rank, and
// a killed rank makes the other fail with a clear error instead of hanging.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/data/token_shard.h"
#include "core/distributed/local_launcher.h"
#include "core/safetensors/safetensors.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/cli_process.h"
#include "tests/support/korean_fixture.h"

namespace fs = std::filesystem;

namespace {

using ktl::cli_process::ktl_bin;
using ktl::cli_process::slurp;
using ktl::cli_process::spawn;
using ktl::cli_process::wait_exit;
using ktl::cli_process::wait_exit_for;

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

// Largest |a - b| over every tensor of two checkpoints' model.safetensors (or `file`; F32).
double max_weight_diff(const std::string& a_dir, const std::string& b_dir,
                       const std::string& file = "model.safetensors") {
  auto a = ktl::SafetensorsFile::open(a_dir + "/" + file);
  auto b = ktl::SafetensorsFile::open(b_dir + "/" + file);
  EXPECT_EQ(a.tensors().size(), b.tensors().size());
  double worst = 0;
  for (const auto& ta : a.tensors()) {
    const auto* tb = b.find(ta.name);
    EXPECT_NE(tb, nullptr) << ta.name;
    if (!tb) return INFINITY;
    EXPECT_EQ(ta.dtype, ktl::StDtype::F32) << ta.name;
    EXPECT_EQ(ta.shape, tb->shape) << ta.name;
    const size_t n = ta.nbytes / sizeof(float);
    const float* pa = static_cast<const float*>(a.data(ta));
    const float* pb = static_cast<const float*>(b.data(*tb));
    for (size_t i = 0; i < n; ++i) worst = std::max(worst, double(std::fabs(pa[i] - pb[i])));
  }
  return worst;
}

class DistributedTrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(ktl_bin())) return;
    dir_ = new TempDir("ktl-dist");
    data_ = dir_->path() + "/data";
    fs::create_directories(data_);
    ktl::testing::write_lines(data_ + "/corpus.txt", ktl::testing::korean_sentences(3000));
    ktl::TokenizerTrainOptions o;
    o.input_files = {data_ + "/corpus.txt"};
    o.model_prefix = data_ + "/tokenizer";
    o.vocab_size = 512;
    o.character_coverage = 0.99;
    o.input_sentence_size = 0;
    ktl::train_tokenizer(o);
    auto tok = ktl::Tokenizer::load(data_ + "/tokenizer.model");
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
  // fp32, 4 rows x 2 micro-batches per step: the same global batch for 1 or 2 ranks.
  static std::vector<std::string> train_args(const std::string& out,
                                             const std::string& max_steps = "6") {
    return {"train",
            "--model-config",
            dir_->path() + "/model.yaml",
            "--data",
            data_,
            "--output-dir",
            out,
            "--batch-size",
            "4",
            "--gradient-accumulation-steps",
            "2",
            "--max-seq-length",
            "32",
            "--num-threads",
            "1",
            "--bf16",
            "false",
            "--eval-batches",
            "2",
            "--eval-steps",
            "0",
            "--sample-steps",
            "0",
            "--warmup-steps",
            "2",
            "--learning-rate",
            "3e-3",
            "--log-steps",
            "1",
            "--save-steps",
            "2",
            "--max-steps",
            max_steps,
            "--seed",
            "11"};
  }
  // Runs once per suite and caches: the reference run on one process.
  static const std::string& one_process_run() {
    static std::string out;
    if (out.empty()) {
      out = dir_->path() + "/one";
      const std::string log = out + ".log";
      const int rc = wait_exit(spawn(train_args(out), log));
      EXPECT_EQ(rc, 0) << slurp(log);
    }
    return out;
  }
  // Two ranks through the launcher, small buckets so several overlap with backward.
  static const std::string& two_rank_run() {
    static std::string out;
    if (out.empty()) {
      out = dir_->path() + "/two";
      auto args = train_args(out);
      for (const char* a : {"--nproc-per-node", "2", "--bucket-mb", "0.02"}) args.push_back(a);
      const int rc = wait_exit(spawn(args, out + ".log"));
      EXPECT_EQ(rc, 0) << slurp(out + ".log");
    }
    return out;
  }
  static TempDir* dir_;
  static std::string data_;
};

TempDir* DistributedTrainTest::dir_ = nullptr;
std::string DistributedTrainTest::data_;

// One test (one process under ctest, so one setup): equal to one process, then resumed on one.
TEST_F(DistributedTrainTest, TwoGlooRanksMatchOneProcessAndTheirCheckpointResumesOnOne) {
  const std::string one = one_process_run(), two = two_rank_run();
  const std::string log = slurp(two + ".log");
  EXPECT_NE(log.find("launching 2 local ranks"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 0 of 2 (gloo)"), std::string::npos) << log;
  EXPECT_NE(log.find("step 6/6"), std::string::npos) << log;
  // Communication is measured and reported, and buckets went out during backward.
  EXPECT_NE(log.find("dist: 2 ranks | all-reduce wait"), std::string::npos) << log;
  EXPECT_EQ(log.find("| 0/"), std::string::npos) << "no bucket overlapped backward:\n" << log;
  ASSERT_TRUE(fs::exists(two + "/final/model.safetensors")) << log;
  EXPECT_LE(max_weight_diff(one + "/final", two + "/final"), 1e-5);
  EXPECT_LE(max_weight_diff(one + "/checkpoint-2", two + "/checkpoint-2"), 1e-5);
  // Only rank 0 writes: one set of checkpoints, no stray temp directories.
  for (const auto& e : fs::directory_iterator(two))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos);

  // The two-rank checkpoint at step 4 resumes on one rank and ends where one process ends.
  const std::string resumed = dir_->path() + "/resumed", rlog = resumed + ".log";
  ASSERT_EQ(wait_exit(spawn({"train", "--resume-from", two + "/checkpoint-4", "--data", data_,
                             "--output-dir", resumed, "--num-threads", "1"},
                            rlog)),
            0)
      << slurp(rlog);
  EXPECT_NE(slurp(rlog).find("resumed from"), std::string::npos);
  EXPECT_NE(slurp(rlog).find("step 6/6"), std::string::npos) << slurp(rlog);
  EXPECT_LE(max_weight_diff(one + "/final", resumed + "/checkpoint-6"), 1e-5);
}

TEST_F(DistributedTrainTest, AllReduceAfterBackwardGivesTheSameParameters) {
  const std::string one = one_process_run(), out = dir_->path() + "/two-sync";
  auto args = train_args(out);
  for (const char* a : {"--nproc-per-node", "2", "--no-overlap"}) args.push_back(a);
  ASSERT_EQ(wait_exit(spawn(args, out + ".log")), 0) << slurp(out + ".log");
  EXPECT_NE(slurp(out + ".log").find("overlap off"), std::string::npos);
  EXPECT_LE(max_weight_diff(one + "/final", out + "/final"), 1e-5);
}

// LoRA over two Gloo ranks: only the adapter is trainable, so only it is all-reduced, and the
// ranks end with one process's adapter (dropout 0: ranks draw their own dropout masks).
TEST_F(DistributedTrainTest, LoraOnTwoRanksEndsWithOneProcessesAdapter) {
  const std::string base = one_process_run() + "/final";
  std::string outs[2];
  for (int ranks : {1, 2}) {
    const std::string out = dir_->path() + "/lora" + std::to_string(ranks);
    auto args = train_args(out, "4");
    args[1] = "--init-from";  // instead of --model-config
    args[2] = base;
    for (const char* a : {"--lora-rank", "4", "--lora-dropout", "0"}) args.push_back(a);
    if (ranks == 2)
      for (const char* a : {"--nproc-per-node", "2", "--bucket-mb", "0.01"}) args.push_back(a);
    ASSERT_EQ(wait_exit(spawn(args, out + ".log")), 0) << slurp(out + ".log");
    outs[ranks - 1] = out;
  }
  const std::string log = slurp(outs[1] + ".log");
  EXPECT_NE(log.find("rank 0 of 2 (gloo)"), std::string::npos) << log;
  EXPECT_NE(log.find("LoRA: r 4"), std::string::npos) << log;
  ASSERT_TRUE(fs::exists(outs[1] + "/final/adapter_model.safetensors")) << log;
  EXPECT_FALSE(fs::exists(outs[1] + "/final/model.safetensors"));
  EXPECT_LE(max_weight_diff(outs[0] + "/final", outs[1] + "/final", "adapter_model.safetensors"),
            1e-5);
}

TEST_F(DistributedTrainTest, SigtermToTheLaunchersGroupStopsEveryRankWithACheckpoint) {
  const std::string out = dir_->path() + "/sigterm", log = out + ".log";
  auto args = train_args(out, "100000");
  for (const char* a : {"--nproc-per-node", "2"}) args.push_back(a);
  const pid_t pid = spawn(args, log, {}, /*own_group=*/true);
  for (int i = 0; i < 600 && slurp(log).find("step 3/") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_NE(slurp(log).find("step 3/"), std::string::npos) << slurp(log);
  kill(-pid, SIGTERM);  // the whole group, as the jobs daemon cancels a job
  const int rc = wait_exit_for(pid, 60);
  if (rc < 0) kill(pid, SIGKILL), wait_exit(pid);
  EXPECT_EQ(rc, 0) << slurp(log);
  EXPECT_NE(slurp(log).find("stopped at step"), std::string::npos) << slurp(log);
  EXPECT_TRUE(fs::exists(out + "/latest/optimizer.safetensors"));
}

TEST_F(DistributedTrainTest, ATimeBudgetEndsEveryRankAtTheSameStep) {
  // Each rank times its own steps; the budget and the learning rate follow the ranks' mean
  // clock, so both stop at the same step (a rank that left alone would hang the other).
  const std::string out = dir_->path() + "/budget", log = out + ".log";
  auto args = train_args(out, "100000");
  for (const char* a : {"--nproc-per-node", "2", "--max-minutes", "0.02", "--dist-timeout", "30"})
    args.push_back(a);
  const pid_t pid = spawn(args, log, {}, /*own_group=*/true);
  const int rc = wait_exit_for(pid, 90);
  if (rc < 0) kill(-pid, SIGKILL), wait_exit(pid);
  ASSERT_EQ(rc, 0) << slurp(log);
  EXPECT_NE(slurp(log).find("training completed at step"), std::string::npos) << slurp(log);
  EXPECT_TRUE(fs::exists(out + "/final/model.safetensors"));
}

TEST_F(DistributedTrainTest, AKilledRankMakesTheOtherFailWithAClearError) {
  const std::string out = dir_->path() + "/killed";
  auto args = train_args(out, "100000");
  const std::string port = std::to_string(ktl::free_local_port());
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r)
    pids.push_back(spawn(args, out + "-" + std::to_string(r) + ".log",
                         {{"WORLD_SIZE", "2"},
                          {"RANK", std::to_string(r)},
                          {"LOCAL_RANK", std::to_string(r)},
                          {"MASTER_ADDR", "127.0.0.1"},
                          {"MASTER_PORT", port},
                          {"KTL_DIST_TIMEOUT", "30"}}));
  const std::string log0 = out + "-0.log";
  for (int i = 0; i < 600 && slurp(log0).find("step 3/") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_NE(slurp(log0).find("step 3/"), std::string::npos) << slurp(log0);
  kill(pids[1], SIGKILL);
  wait_exit(pids[1]);
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = wait_exit_for(pids[0], 40);
  if (rc < 0) kill(pids[0], SIGKILL), wait_exit(pids[0]);
  ASSERT_GT(rc, 0) << "rank 0 did not fail after its peer died:\n" << slurp(log0);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 35.0);
  EXPECT_NE(slurp(log0).find("peer rank"), std::string::npos) << slurp(log0);
}

// Through the launcher: a rank killed from outside fails the job, naming the rank, and the
// launcher reaps the other instead of waiting on it.
TEST_F(DistributedTrainTest, TheLauncherFailsTheJobWhenARankDies) {
  const std::string out = dir_->path() + "/launched-kill", log = out + ".log";
  auto args = train_args(out, "100000");
  for (const char* a : {"--nproc-per-node", "2", "--dist-timeout", "30"}) args.push_back(a);
  const pid_t pid = spawn(args, log);
  for (int i = 0; i < 600 && slurp(log).find("step 3/") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_NE(slurp(log).find("step 3/"), std::string::npos) << slurp(log);
  // The ranks are the launcher's children (Linux lists them in /proc).
  std::istringstream children(
      slurp("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children"));
  std::vector<pid_t> ranks;
  for (pid_t c; children >> c;) ranks.push_back(c);
  if (ranks.size() != 2) {
    kill(pid, SIGKILL), wait_exit(pid);
    GTEST_SKIP() << "no /proc children list here";
  }
  kill(ranks[1], SIGKILL);
  const int rc = wait_exit_for(pid, 45);
  if (rc < 0) kill(pid, SIGKILL), wait_exit(pid);
  EXPECT_GT(rc, 0) << slurp(log);
  EXPECT_NE(slurp(log).find("data-parallel training failed: local rank"), std::string::npos)
      << slurp(log);
  EXPECT_NE(kill(ranks[0], 0), 0) << "rank 0 outlived the launcher";
}

}  // namespace
