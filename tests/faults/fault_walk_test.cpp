// Fault walks through the real `ktl` binary with tests/faults/fault_inject.c preloaded: a run
// is first counted (every open/write/fsync/rename on the files under test), then repeated with
// the N-th op failing (ENOSPC, EIO) or the process killed at it, for the ops of a checkpoint
// save, a metrics flush to the job database, and a data directory's shards and tokenizer.
// At every N: the previous checkpoint stays loadable and `latest` names a complete one; the
// run fails with a message naming the file and the errno (never a silent success); a resumed
// run ends with the same metric rows as an uninterrupted one; no partial shard or tokenizer is
// ever in place. Short sample by default; `make chaos` (KTL_FAULT_WALK=full) walks every op.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/base/file_util.h"
#include "core/data/token_shard.h"
#include "core/model/checkpoint_meta.h"
#include "core/safetensors/safetensors.h"
#include "core/tokenizer/tokenizer.h"
#include "jobs/job_store.h"
#include "tests/support/fault_test_util.h"
#include "tests/support/job_test_util.h"

namespace ktl {
namespace {

namespace fs = std::filesystem;
using jobs::testing::TempDir;
using testing::Fault;
using testing::read_text;
using testing::run_ktl;

// A checkpoint is complete when everything in it checks out: meta.json, each file's sha256
// (verify_checkpoint_files), a readable safetensors file and tokenizer. "" = complete.
std::string checkpoint_problem(const fs::path& dir) {
  try {
    const auto problems = verify_checkpoint_files(dir.string());
    if (!problems.empty()) return problems.front();
    SafetensorsFile::open((dir / "model.safetensors").string());
    Tokenizer::load((dir / "tokenizer.model").string());
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

class FaultWalkTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(testing::fault_ktl_bin())) return;
    dir_ = new TempDir();
    data_ = dir_->str("data");
    testing::make_tiny_data(data_);
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "ktl binary not built";
  }
  // Counts the ops a run makes on paths containing `part`; returns them.
  std::vector<testing::FaultOp> count_ops(const std::vector<std::string>& args,
                                          const std::string& part, const std::string& tag) {
    const std::string log = dir_->str(tag + ".ops");
    fs::remove(log);
    const std::string out = dir_->str(tag + ".log");
    EXPECT_EQ(run_ktl(args, testing::fault_env(part, Fault{0, "ENOSPC"}, log), out), 0)
        << read_text(out);
    return testing::read_fault_log(log);
  }
  static TempDir* dir_;
  static std::string data_;
};

TempDir* FaultWalkTest::dir_ = nullptr;
std::string FaultWalkTest::data_;

// Checks what must hold after a faulted `ktl train` run into `out`.
void expect_checkpoints_sound(const fs::path& out, const Fault& f, int code,
                              const std::string& log) {
  SCOPED_TRACE(f.describe());
  EXPECT_NE(code, 0) << "a failed write must fail the run\n" << log;
  const std::string words = testing::errno_words(f.error);
  if (!words.empty()) {
    EXPECT_NE(log.find(words), std::string::npos) << "the errno is not named\n" << log;
    EXPECT_NE(log.find(out.string()), std::string::npos) << "the path is not named\n" << log;
  }
  EXPECT_EQ(checkpoint_problem(out / "checkpoint-2"), "");  // the previous one is intact
  ASSERT_TRUE(fs::is_symlink(out / "latest"));
  EXPECT_EQ(checkpoint_problem(fs::canonical(out / "latest")), "");
  // A checkpoint directory in place is a complete one.
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && name.find('.') == std::string::npos) {
      EXPECT_EQ(checkpoint_problem(e.path()), "") << name;
    }
  }
}

TEST_F(FaultWalkTest, CheckpointSaveSurvivesAFaultAtEveryOp) {
  const std::string out = dir_->str("ck-count");
  auto ops = count_ops(testing::tiny_train_args(data_, out, 4, 2), out, "ck-count");
  // The walk covers the second save (checkpoint-4), so there is a previous one to keep.
  long first = 0, last = 0;
  for (const auto& o : ops)
    if (o.path.find("checkpoint-4") != std::string::npos) {
      if (!first) first = o.index;
      last = o.index;
    }
  ASSERT_GT(first, 0) << "no op wrote checkpoint-4";
  for (const auto& o : ops)  // the `latest` link that follows it
    if (o.index > last && o.path.find("latest") != std::string::npos) last = o.index;
  const auto faults = testing::faults_to_walk(ops, first, last);
  std::printf("checkpoint save: %ld ops (%zu in checkpoint-4's save), %zu faults injected\n",
              long(ops.size()), size_t(last - first + 1), faults.size());
  int resumed = 0;
  for (const Fault& f : faults) {
    const fs::path run = dir_->path() / ("ck-" + std::to_string(f.at));
    const std::string log = run.string() + ".log";
    const int code =
        run_ktl(testing::tiny_train_args(data_, run.string(), 4, 2),
                testing::fault_env(run.string(), f), log);
    expect_checkpoints_sound(run, f, code, read_text(log));
    if (f.error == "kill" || resumed == 0) {  // and training carries on from `latest`
      ++resumed;
      const std::string log2 = run.string() + ".resume.log";
      ASSERT_EQ(run_ktl({"train", "--resume-from", (run / "latest").string(), "--data", data_,
                         "--max-steps", "4"},
                        {}, log2),
                0)
          << read_text(log2);
      EXPECT_EQ(fs::read_symlink(run / "latest").string(), "checkpoint-4");
    }
    fs::remove_all(run);
  }
}

// (key, step) -> value of every metric row but timings, which differ run to run.
std::map<std::pair<std::string, int64_t>, double> metric_rows(jobs::JobStore& store, int64_t id) {
  std::map<std::pair<std::string, int64_t>, double> rows;
  for (const auto& m : store.metrics(id)) {
    const bool seconds = m.key.size() > 2 && m.key.compare(m.key.size() - 2, 2, "_s") == 0;
    if (seconds || m.key.find("per_s") != std::string::npos || m.key.find("seconds") != std::string::npos ||
        m.key.find("time") != std::string::npos || m.key.find("mfu") != std::string::npos ||
        m.key.find("rss") != std::string::npos)
      continue;
    rows[{m.key, m.step}] = m.value;
  }
  return rows;
}

std::multiset<std::tuple<int64_t, std::string, std::string>> sample_rows(jobs::JobStore& store,
                                                                         int64_t id) {
  std::multiset<std::tuple<int64_t, std::string, std::string>> rows;
  for (const auto& s : store.samples(id)) rows.insert({s.step, s.kind, s.prompt});
  return rows;
}

TEST_F(FaultWalkTest, MetricsFlushFaultsLoseAndDoubleNoRowOnceResumed) {
  const std::string db = dir_->str("ktl.db");
  jobs::JobStore store(db);
  auto new_job = [&] { return store.create_job({jobs::JobKind::kTrain, "walk", "{}", {}, {}}).id; };
  auto job_args = [&](const std::string& out, int64_t id) {
    // Samples between checkpoints: a run resumed from checkpoint 2 regenerates step 3's.
    auto a = testing::tiny_train_args(data_, out, 6, 2, 3);
    for (const std::string& s : {std::string("--job-db"), db, std::string("--job-id"),
                                 std::to_string(id)})
      a.push_back(s);
    return a;
  };
  const int64_t ref = new_job();  // the uninterrupted run
  auto ops = count_ops(job_args(dir_->str("m-ref"), ref), "ktl.db", "m-ref");
  const auto want = metric_rows(store, ref);
  const auto want_samples = sample_rows(store, ref);
  ASSERT_FALSE(want.empty());
  ASSERT_FALSE(want_samples.empty());
  auto faults = testing::faults_to_walk(ops, 1, long(ops.size()));
  for (size_t i = 0; i < faults.size(); ++i)
    faults[i].sticky = faults[i].error == "ENOSPC";  // a full disk stays full
  std::printf("metrics flush: %zu ops on the job database, %zu faults injected\n", ops.size(),
              faults.size());
  int failed_runs = 0;
  for (const Fault& f : faults) {
    SCOPED_TRACE(f.describe());
    const int64_t id = new_job();
    const fs::path run = dir_->path() / ("m-" + std::to_string(f.at));
    const std::string log = run.string() + ".log";
    const int code = run_ktl(job_args(run.string(), id), testing::fault_env("ktl.db", f), log);
    const std::string text = read_text(log);
    if (code != 0) {
      ++failed_runs;
      const std::string words = testing::errno_words(f.error);
      if (!words.empty()) {
        EXPECT_NE(text.find(words), std::string::npos) << text;
        EXPECT_NE(text.find(db), std::string::npos) << text;
      }
      // Resume where the job's last stored checkpoint is, as the job runner would.
      auto cps = store.checkpoints(id);
      std::vector<std::string> args = job_args(run.string(), id);
      if (!cps.empty() && fs::exists(cps.back().path))
        args = {"train", "--resume-from", cps.back().path, "--data", data_, "--job-db", db,
                "--job-id", std::to_string(id)};
      const std::string log2 = run.string() + ".resume.log";
      ASSERT_EQ(run_ktl(args, {}, log2), 0) << read_text(log2);
    } else {
      EXPECT_FALSE(f.sticky) << "a run that could store nothing reported success\n" << text;
    }
    EXPECT_EQ(metric_rows(store, id), want);
    EXPECT_EQ(sample_rows(store, id), want_samples);
    fs::remove_all(run);
  }
  EXPECT_GT(failed_runs, 0);
}

TEST_F(FaultWalkTest, DataDirNeverHoldsAPartialShardOrTokenizer) {
  const std::string corpus = dir_->str("corpus.txt");
  testing::write_lines(corpus, testing::korean_sentences(1500, 'd'));
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{"prepare-data", "--input", corpus, "--output", out,
                                    "--vocab-size", "600", "--input-sentence-size", "0",
                                    "--val-fraction", "0.05", "--test-fraction", "0.05",
                                    "--threads", "1", "--quiet"};
  };
  const std::string count_dir = dir_->str("d-count");
  auto ops = count_ops(args(count_dir), count_dir, "d-count");
  auto faults = testing::faults_to_walk(ops, 1, long(ops.size()));
  std::printf("prepare-data: %zu ops, %zu faults injected\n", ops.size(), faults.size());
  for (const Fault& f : faults) {
    SCOPED_TRACE(f.describe());
    const fs::path out = dir_->path() / ("d-" + std::to_string(f.at));
    const std::string log = out.string() + ".log";
    const int code = run_ktl(args(out.string()), testing::fault_env(out.string(), f), log);
    const std::string text = read_text(log);
    EXPECT_NE(code, 0) << text;
    // The errno, except where SentencePiece swallowed it (its model write): then the check of
    // its file says so.
    if (!testing::errno_words(f.error).empty()) {
      EXPECT_TRUE(text.find(testing::errno_words(f.error)) != std::string::npos ||
                  text.find("SentencePiece wrote an incomplete model") != std::string::npos)
          << text;
    }
    // Whatever is in place under its final name is whole.
    for (const char* s : {"train.bin", "val.bin", "test.bin"}) {
      if (fs::exists(out / s)) {
        EXPECT_NO_THROW(TokenShard::open(out / s)) << s;
      }
    }
    if (fs::exists(out / "tokenizer.model")) {
      EXPECT_NO_THROW(Tokenizer::load((out / "tokenizer.model").string()));
    }
    if (fs::exists(out / "stats.json")) {
      EXPECT_TRUE(nlohmann::json::accept(read_text((out / "stats.json").string())));
    }
    fs::remove_all(out);
  }
}

}  // namespace
}  // namespace ktl
