// `ktl dpo` end to end through the binary on a tiny model, and the dpo job kind through
// JobRunner: a run killed with SIGKILL (or stopped by SIGTERM, or cancelled as a job) and
// resumed from its newest checkpoint ends with the weights of an uninterrupted run (one thread,
// fp32: deterministic, so the bound is 1e-5 and the difference is in fact 0); ORPO and
// --rejected-from-model run end to end. No LibTorch in the test itself.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/safetensors/safetensors.h"
#include "core/tokenizer/tokenizer.h"
#include "jobs/job_runner.h"
#include "jobs/job_store.h"
#include "tests/support/cli_process.h"
#include "tests/support/job_test_util.h"
#include "tests/support/korean_fixture.h"
#include "tests/support/safetensors_diff.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using ktl::cli_process::ktl_bin;
using ktl::cli_process::slurp;
using ktl::cli_process::spawn;
using ktl::cli_process::wait_exit;
using ktl::cli_process::wait_for_text;

class DpoCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(ktl_bin())) return;
    dir_ = new ktl::jobs::testing::TempDir();
    const std::string d = dir_->str();
    ktl::testing::write_lines(d + "/corpus.txt", ktl::testing::korean_sentences(3000));
    ktl::TokenizerTrainOptions o;  // reserves the chat markers
    o.input_files = {d + "/corpus.txt"};
    o.model_prefix = d + "/tokenizer";
    o.vocab_size = 512;
    o.character_coverage = 0.99;
    o.input_sentence_size = 0;
    ktl::train_tokenizer(o);
    std::ofstream(d + "/model.yaml")
        << "vocab_size: 512\nhidden_size: 32\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n"
           "intermediate_size: 64\nmax_seq_length: 64\n";
    ASSERT_EQ(wait_exit(spawn({"init-model", "--model-config", d + "/model.yaml", "--tokenizer",
                               d + "/tokenizer.model", "--out", d + "/base"},
                              d + "/init.log")),
              0)
        << slurp(d + "/init.log");
    // 60 pairs: a short question, a fluent chosen answer, a fragment of another as rejected.
    const auto chosen = ktl::testing::korean_sentences(60, 'c');
    const auto other = ktl::testing::korean_sentences(60, 'r');
    std::ofstream prefs(d + "/prefs.jsonl");
    auto words = [](const std::string& s, int n) {  // the first n words
      size_t cut = 0;
      for (int k = 0; k < n && cut != std::string::npos; ++k) cut = s.find(' ', cut + 1);
      return s.substr(0, cut);
    };
    for (size_t i = 0; i < 60; ++i) {
      prefs << json{{"prompt", "질문 " + std::to_string(i) + " 무엇을 했나요"},
                    {"chosen", words(chosen[i], 4)},
                    {"rejected", words(other[(i * 7 + 3) % 60], 2)}}
                   .dump()
            << "\n";
    }
    prefs.close();
    // The same pairs as a split preference file: FILE.jsonl (train) + FILE.val.jsonl.
    std::istringstream all(slurp(d + "/prefs.jsonl"));
    std::ofstream train(d + "/split.jsonl"), val(d + "/split.val.jsonl");
    std::string line;
    for (int i = 0; std::getline(all, line); ++i) (i < 40 ? train : val) << line << "\n";
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "ktl binary not built";
  }
  static std::string path(const std::string& sub) { return dir_->str(sub); }
  // The run every interrupted one must match: 200 steps of 2 pairs, one thread, fp32.
  static std::vector<std::string> settings() {
    return {"--data",
            path("prefs.jsonl"),
            "--max-steps",
            "200",
            "--save-steps",
            "20",
            "--batch-size",
            "2",
            "--max-seq-length",
            "64",
            "--num-threads",
            "1",
            "--bf16",
            "false",
            "--log-steps",
            "10",
            "--eval-steps",
            "50",
            "--learning-rate",
            "1e-3",
            "--min-learning-rate",
            "1e-4",
            "--warmup-steps",
            "5",
            "--keep-last-checkpoints",
            "2",
            "--val-fraction",
            "0.25"};
  }
  static std::vector<std::string> fresh(const std::string& out) {
    std::vector<std::string> a = {"dpo", "--init-from", path("base"), "--output-dir", out};
    for (const auto& s : settings()) a.push_back(s);
    return a;
  }
  // model.safetensors of the uninterrupted run (made once).
  static std::string uninterrupted() {
    static std::string weights;
    if (weights.empty()) {
      const std::string out = path("straight"), log = path("straight.log");
      EXPECT_EQ(wait_exit(spawn(fresh(out), log)), 0) << slurp(log);
      weights = out + "/final/model.safetensors";
    }
    return weights;
  }
  static ktl::jobs::testing::TempDir* dir_;
};

ktl::jobs::testing::TempDir* DpoCliTest::dir_ = nullptr;

TEST_F(DpoCliTest, UninterruptedRunReportsAndLeavesFinalAndLatest) {
  const std::string w = uninterrupted();
  const std::string text = slurp(path("straight.log"));
  EXPECT_NE(text.find("reference log-probabilities: 60 of 60 pairs"), std::string::npos) << text;
  EXPECT_NE(text.find(" held-out pairs (0 longer than 64 tokens dropped)"), std::string::npos)
      << text;
  EXPECT_NE(text.find("step 200/200 | dpo loss"), std::string::npos) << text;
  EXPECT_NE(text.find("val step 200 | dpo loss"), std::string::npos) << text;
  EXPECT_NE(text.find("dpo completed at step 200"), std::string::npos) << text;
  EXPECT_TRUE(fs::exists(w));
  EXPECT_EQ(fs::read_symlink(path("straight/latest")).string(), "checkpoint-200");
  // keep_last_checkpoints 2: 180 and 200 remain.
  EXPECT_FALSE(fs::exists(path("straight/checkpoint-160")));
  EXPECT_TRUE(fs::exists(path("straight/checkpoint-180/optimizer.safetensors")));
  EXPECT_GT(ktl::testing::max_f32_tensor_diff(w, path("base/model.safetensors")),
            1e-3);  // it trained
}

TEST_F(DpoCliTest, SigkillMidRunThenResumeEndsWithTheUninterruptedWeights) {
  const std::string want = uninterrupted();
  const std::string out = path("killed"), log = path("killed.log");
  const pid_t pid = spawn(fresh(out), log);
  ASSERT_TRUE(wait_for_text(log, "saved ", pid)) << slurp(log);
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  ASSERT_FALSE(fs::exists(out + "/final")) << "the run ended before the kill";
  const std::string log2 = path("killed-resume.log");
  // The checkpoint holds the settings: only the data is given again.
  ASSERT_EQ(wait_exit(spawn(
                {"dpo", "--resume-from", out + "/latest", "--data", path("prefs.jsonl")}, log2)),
            0)
      << slurp(log2);
  EXPECT_NE(slurp(log2).find("resumed from " + out + "/latest at step "), std::string::npos)
      << slurp(log2);
  // The reference log-probabilities computed before the kill come from the checkpoint.
  EXPECT_NE(slurp(log2).find("reference log-probabilities: 60 of 60 pairs"), std::string::npos)
      << slurp(log2);
  EXPECT_LE(ktl::testing::max_f32_tensor_diff(out + "/final/model.safetensors", want), 1e-5);
}

TEST_F(DpoCliTest, SigtermCheckpointsExitsZeroAndTheRunResumes) {
  const std::string want = uninterrupted();
  const std::string out = path("term"), log = path("term.log");
  const pid_t pid = spawn(fresh(out), log);
  ASSERT_TRUE(wait_for_text(log, "step 30/200", pid)) << slurp(log);
  kill(pid, SIGTERM);
  ASSERT_EQ(wait_exit(pid), 0) << slurp(log);
  const std::string text = slurp(log);
  const size_t at = text.find("stopped at step ");
  ASSERT_NE(at, std::string::npos) << text;
  const int step = std::stoi(text.substr(at + 16));
  EXPECT_EQ(fs::read_symlink(out + "/latest").string(), "checkpoint-" + std::to_string(step));
  const json state = json::parse(slurp(out + "/latest/trainer_state.json"));
  EXPECT_EQ(state["step"], step);
  EXPECT_TRUE(fs::exists(out + "/latest/optimizer.safetensors"));
  EXPECT_NE(text.find("dpo stopped at step " + std::to_string(step)), std::string::npos) << text;
  const std::string log2 = path("term-resume.log");
  ASSERT_EQ(wait_exit(spawn(
                {"dpo", "--resume-from", out + "/latest", "--data", path("prefs.jsonl")}, log2)),
            0)
      << slurp(log2);
  EXPECT_LE(ktl::testing::max_f32_tensor_diff(out + "/final/model.safetensors", want), 1e-5);
}

TEST_F(DpoCliTest, OrpoRunsWithoutAReferenceOnASplitPreferenceFile) {
  const std::string out = path("orpo"), log = path("orpo.log");
  ASSERT_EQ(wait_exit(spawn({"dpo",
                             "--init-from",
                             path("base"),
                             "--output-dir",
                             out,
                             "--data",
                             path("split.jsonl"),
                             "--loss",
                             "orpo",
                             "--orpo-lambda",
                             "0.2",
                             "--max-steps",
                             "20",
                             "--batch-size",
                             "2",
                             "--max-seq-length",
                             "64",
                             "--num-threads",
                             "1",
                             "--learning-rate",
                             "1e-3",
                             "--log-steps",
                             "10"},
                            log)),
            0)
      << slurp(log);
  const std::string text = slurp(log);
  EXPECT_NE(text.find("step 20/20 | orpo loss"), std::string::npos) << text;
  EXPECT_NE(text.find("| nll "), std::string::npos) << text;
  EXPECT_EQ(text.find("reference log-probabilities"), std::string::npos) << text;
  // The held-out pairs are the file's .val sibling, not a hash split of it.
  EXPECT_NE(text.find("held-out pairs: " + path("split.val.jsonl")), std::string::npos) << text;
  EXPECT_NE(text.find("40 train / 20 held-out pairs"), std::string::npos) << text;
  EXPECT_TRUE(fs::exists(out + "/final/model.safetensors"));
  EXPECT_EQ(json::parse(slurp(out + "/final/trainer_state.json"))["dpo"]["loss"], "orpo");
}

TEST_F(DpoCliTest, RejectedFromModelIsSeededAndKeptForTheResume) {
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{"dpo",
                                    "--init-from",
                                    path("base"),
                                    "--output-dir",
                                    out,
                                    "--data",
                                    path("prefs.jsonl"),
                                    "--max-steps=10",
                                    "--save-steps=5",
                                    "--batch-size=2",
                                    "--max-seq-length=64",
                                    "--num-threads=1",
                                    "--bf16=false",
                                    "--rejected-from-model",
                                    "--rejected-max-tokens=6"};
  };
  auto a = args(path("onpolicy-a")), b = args(path("onpolicy-b"));
  b.push_back("--seed=1234");  // the default: the same draws
  ASSERT_EQ(wait_exit(spawn(a, path("onpolicy-a.log"))), 0) << slurp(path("onpolicy-a.log"));
  ASSERT_EQ(wait_exit(spawn(b, path("onpolicy-b.log"))), 0) << slurp(path("onpolicy-b.log"));
  const std::string train = slurp(path("onpolicy-a/rejected_from_model.jsonl"));
  const std::string val = slurp(path("onpolicy-a/rejected_from_model.val.jsonl"));
  EXPECT_EQ(train, slurp(path("onpolicy-b/rejected_from_model.jsonl")));
  EXPECT_EQ(val, slurp(path("onpolicy-b/rejected_from_model.val.jsonl")));
  EXPECT_NE(slurp(path("onpolicy-a.log")).find("of 60 pairs now on-policy"), std::string::npos)
      << slurp(path("onpolicy-a.log"));
  // Every rejected answer is the model's: none is the file's, none equals the chosen one.
  std::map<std::string, json> orig;
  std::istringstream in(slurp(path("prefs.jsonl")));
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    orig[j["prompt"].get<std::string>()] = j;
  }
  std::istringstream now(train + val);
  int changed = 0, lines = 0;
  for (std::string line; std::getline(now, line); ++lines) {
    const json n = json::parse(line), &o = orig.at(n["prompt"].get<std::string>());
    EXPECT_EQ(o["chosen"], n["chosen"]);
    EXPECT_NE(n["rejected"], n["chosen"]);
    changed += o["rejected"] != n["rejected"];
  }
  EXPECT_EQ(lines, 60);
  EXPECT_GE(changed, 55);
  // A resumed run reads them back instead of sampling again.
  const std::string log = path("onpolicy-resume.log");
  ASSERT_EQ(wait_exit(spawn({"dpo", "--resume-from", path("onpolicy-a/checkpoint-5"), "--data",
                             path("prefs.jsonl")},
                            log)),
            0)
      << slurp(log);
  EXPECT_NE(slurp(log).find("rejected from model: reusing"), std::string::npos) << slurp(log);
}

// The dpo job kind through JobRunner (what `ktl serve` runs): cancelled after its first
// checkpoint (SIGTERM: a checkpoint, exit 0), resumed from it, it succeeds with the weights of
// the uninterrupted run, and its metrics are in the job database.
TEST_F(DpoCliTest, JobKindRunsCancelsAndResumesThroughTheRunner) {
  using namespace ktl::jobs;
  const std::string want = uninterrupted();
  JobStore store(path("jobs.db"));
  JobRunnerOptions ro;
  ro.executable = ktl_bin();
  ro.spec_ctx.data_dir = dir_->str();
  ro.cancel_grace_ms = 60000;
  JobRunner runner(store, ro);
  runner.start();
  const json opts = {{"data", "prefs.jsonl"}, {"init_from", "base"},
                     {"max_steps", 200},      {"save_steps", 20},
                     {"batch_size", 2},       {"max_seq_length", 64},
                     {"num_threads", 1},      {"bf16", "false"},
                     {"log_steps", 10},       {"eval_steps", 50},
                     {"learning_rate", 1e-3}, {"min_learning_rate", 1e-4},
                     {"warmup_steps", 5},     {"keep_last_checkpoints", 2},
                     {"loss", "dpo"},         {"beta", 0.1},
                     {"val_fraction", 0.25}};
  const int64_t id =
      runner.submit(validate_job_spec({{"kind", "dpo"}, {"options", opts}}, ro.spec_ctx)).id;
  ASSERT_TRUE(ktl::jobs::testing::eventually([&] { return !store.checkpoints(id).empty(); },
                                             std::chrono::seconds(120)))
      << to_string(store.require_job(id).status) << " " << store.require_job(id).error;
  runner.cancel(id);
  ASSERT_TRUE(ktl::jobs::testing::eventually(
      [&] { return store.require_job(id).status == JobStatus::kCancelled; },
      std::chrono::seconds(120)))
      << to_string(store.require_job(id).status);
  ASSERT_FALSE(fs::exists(store.require_job(id).output_dir + "/final"))
      << "the job ended before the cancel";
  const Job q = runner.resume(id);
  EXPECT_FALSE(q.resume_from.empty());
  ASSERT_TRUE(ktl::jobs::testing::eventually(
      [&] { return store.require_job(id).status == JobStatus::kSucceeded; },
      std::chrono::seconds(180)))
      << to_string(store.require_job(id).status) << " " << store.require_job(id).error;
  std::string logs;
  for (const auto& l : store.logs_tail(id, 100000)) logs += l.line + "\n";
  EXPECT_NE(logs.find("stopped at step"), std::string::npos) << logs;
  EXPECT_NE(logs.find("resumed from " + q.resume_from), std::string::npos) << logs;
  for (const char* key :
       {"train/loss", "train/reward_accuracy", "train/reward_margin", "train/chosen_reward",
        "train/rejected_reward", "train/lr", "val/loss", "val/reward_accuracy"})
    EXPECT_FALSE(store.metrics(id, key).empty()) << key;
  EXPECT_EQ(store.metrics(id, "train/loss").back().step, 200);
  EXPECT_LE(ktl::testing::max_f32_tensor_diff(
                store.require_job(id).output_dir + "/final/model.safetensors", want),
            1e-5);
  runner.stop();
}

}  // namespace
