// A sweep job end to end through the real `ktl sweep` child: the server stops (restart) in the
// middle of the sweep, a new runner resumes the job, and no finished (trial, rung) is trained
// again; the finished sweep has its ranking and recipe. Needs build/ktl (skipped without it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/data/token_shard.h"
#include "core/tokenizer/tokenizer.h"
#include "jobs/job_runner.h"
#include "tests/support/job_test_util.h"
#include "tests/support/korean_fixture.h"

namespace ktl::jobs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::eventually;

std::string ktl_bin() {
  const char* b = std::getenv("KTL_BIN");
  return b ? b : std::string(KTL_BINARY_DIR) + "/ktl";
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Finished rungs recorded in sweep_state.json (0 when it does not exist yet).
int finished_rungs(const fs::path& state) {
  json s = json::parse(slurp(state), nullptr, false);
  if (s.is_discarded() || !s.contains("halving")) return 0;
  int n = 0;
  for (const auto& t : s["halving"]["trials"]) n += int(t["rung_loss"].size());
  return n;
}

TEST(SweepJob, ResumesAfterAServerRestartWithoutRerunningFinishedTrials) {
  if (!fs::exists(ktl_bin())) GTEST_SKIP() << "ktl binary not built";
  testing::TempDir dir;
  const fs::path data = dir.path() / "data";
  fs::create_directories(data);
  ktl::testing::write_lines((data / "corpus.txt").string(), ktl::testing::korean_sentences(3000));
  TokenizerTrainOptions o;
  o.input_files = {(data / "corpus.txt").string()};
  o.model_prefix = (data / "tokenizer").string();
  o.vocab_size = 512;
  o.character_coverage = 0.99;
  o.input_sentence_size = 0;
  train_tokenizer(o);
  auto tok = Tokenizer::load((data / "tokenizer.model").string());
  for (const char* split : {"train", "val"}) {
    TokenShardWriter w((data / (std::string(split) + ".bin")).string(),
                       uint32_t(tok->vocab_size()));
    for (const auto& s : ktl::testing::korean_sentences(split[0] == 't' ? 800 : 100, split[0]))
      w.add_document(tok->encode(s), s.size() / 3);
    w.finish();
  }
  std::ofstream(dir.path() / "model.yaml")
      << "vocab_size: 512\nhidden_size: 32\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n"
         "intermediate_size: 64\nmax_seq_length: 64\n";
  std::ofstream(dir.path() / "training.yaml")
      << "batch_size: 2\nmax_seq_length: 32\nnum_threads: 1\neval_batches: 2\nlog_steps: 1\n"
         "warmup_steps: 2\nsample_steps: 0\nbf16: \"false\"\nlearning_rate: 1.0e-3\n"
         "min_learning_rate: 1.0e-5\n";
  // 8 trials x 6 steps, then 4 x 6 more, then 2 x 12 more: 14 finished rungs in all.
  std::ofstream(dir.path() / "sweep.yaml")
      << "method: grid\nhalving: {min_steps: 6, max_steps: 24, eta: 2}\nparams:\n"
         "  learning_rate: [3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2]\n  warmup_steps: [1, 3]\n";

  JobStore store(dir.str("jobs.db"));
  JobRunnerOptions ro;
  ro.executable = ktl_bin();
  ro.spec_ctx.data_dir = dir.str();
  ro.stop_grace_ms = 60000;
  const ValidatedSpec spec = validate_job_spec({{"kind", "sweep"},
                                                {"name", "lr sweep"},
                                                {"options",
                                                 {{"space", "sweep.yaml"},
                                                  {"config", "training.yaml"},
                                                  {"model_config", "model.yaml"},
                                                  {"data", "data"}}}},
                                               ro.spec_ctx);
  int64_t id = 0;
  fs::path state;
  {
    JobRunner first(store, ro);
    first.start();
    id = first.submit(spec).id;
    state = fs::path(store.require_job(id).output_dir) / "sweep_state.json";
    ASSERT_TRUE(eventually([&] { return finished_rungs(state) >= 3; }, std::chrono::seconds(120)))
        << slurp(state);
    first.stop();  // the server restarts: SIGTERM, the sweep saves its state
  }
  ASSERT_EQ(store.require_job(id).status, JobStatus::kInterrupted);
  const int before = finished_rungs(state);
  ASSERT_LT(before, 14) << "the sweep finished before the restart; nothing to resume";

  JobRunner second(store, ro);
  second.start();
  second.resume(id);
  ASSERT_TRUE(eventually([&] { return store.require_job(id).status == JobStatus::kSucceeded; },
                         std::chrono::seconds(180)))
      << to_string(store.require_job(id).status) << " " << store.require_job(id).error;
  EXPECT_EQ(finished_rungs(state), 14);

  // Every (trial, rung) was trained to its end exactly once across both runs.
  std::string logs;
  for (const auto& l : store.logs_tail(id, 100000)) logs += l.line + "\n";
  std::map<std::string, int> done;
  static const std::regex kDone(R"(sweep: trial (\d+) rung (\d+) \()");
  for (std::sregex_iterator it(logs.begin(), logs.end(), kDone), end; it != end; ++it)
    ++done[(*it)[1].str() + "/" + (*it)[2].str()];
  EXPECT_EQ(done.size(), 14u) << logs;
  for (const auto& [k, n] : done) EXPECT_EQ(n, 1) << "trial/rung " << k << " trained " << n;
  EXPECT_NE(logs.find("sweep: resuming from"), std::string::npos);
  // Every trial's curve is in the job database; the ranking and recipe are written.
  for (int t = 0; t < 8; ++t)
    EXPECT_FALSE(store.metrics(id, "trial/" + std::to_string(t) + "/val/loss").empty()) << t;
  const fs::path out = fs::path(store.require_job(id).output_dir);
  EXPECT_NE(slurp(out / "ranking.md").find("| 1 |"), std::string::npos);
  EXPECT_NE(slurp(out / "recipe.yaml").find("learning_rate:"), std::string::npos);
  json s = json::parse(slurp(state));
  EXPECT_TRUE(s["finished"].get<bool>());
  EXPECT_EQ(s["ranking"].size(), 8u);
  EXPECT_EQ(s["ranking"][0]["state"], "completed");
}

}  // namespace
}  // namespace ktl::jobs
