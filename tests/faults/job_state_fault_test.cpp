// Job-state changes under a failing disk, in process: this binary runs with the fault library
// preloaded (see tests/faults/CMakeLists.txt) and arms it through ktl_fault_arm(). A job's life
// (create, running, pid, event, logs, metrics, failed) is repeated with its N-th database op
// failing, for every N: the failed call throws naming the database, changes nothing (SQLite
// rolls the transaction back), the file stays consistent, and the same call succeeds once the
// disk is back. And a runner whose child ends while the database refuses writes records the
// end state once it can, instead of leaving the job `running`.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "jobs/job_runner.h"
#include "jobs/job_spec.h"
#include "jobs/job_store.h"
#include "jobs/sqlite_db.h"
#include "tests/support/job_test_util.h"

namespace ktl::jobs {
namespace {

namespace fs = std::filesystem;
using testing::eventually;
using testing::TempDir;

using ArmFn = void (*)(const char*, int, long, int, int);
using CountFn = long (*)();

struct Injector {
  ArmFn arm = reinterpret_cast<ArmFn>(dlsym(RTLD_DEFAULT, "ktl_fault_arm"));
  CountFn count = reinterpret_cast<CountFn>(dlsym(RTLD_DEFAULT, "ktl_fault_count"));
  bool loaded() const { return arm && count; }
  void fail_at(const std::string& path, long n, int err, bool sticky = false) {
    arm(path.c_str(), 1 | 2 | 4 | 8, n, err, sticky ? 1 : 0);
  }
  void count_only(const std::string& path) { arm(path.c_str(), 1 | 2 | 4 | 8, 0, 0, 0); }
  void off() { arm(nullptr, 0, 0, 0, 0); }
};

// The steps of one job's life, each a separate transaction of the store.
std::vector<std::function<void(JobStore&, int64_t&)>> job_life() {
  return {
      [](JobStore& s, int64_t& id) {
        id = s.create_job({JobKind::kTrain, "life", "{}", {{"lr", "0.1"}}, {}}).id;
      },
      [](JobStore& s, int64_t& id) { s.update_status(id, JobStatus::kRunning); },
      [](JobStore& s, int64_t& id) { s.set_pid(id, 4242); },
      [](JobStore& s, int64_t& id) { s.add_event(id, "stage", R"({"stage":"train"})"); },
      [](JobStore& s, int64_t& id) { s.append_logs(id, {"line one", "line two"}); },
      [](JobStore& s, int64_t& id) { s.add_metrics(id, {{"train/loss", 1, 2.5, 0}}); },
      [](JobStore& s, int64_t& id) {
        s.update_status(id, JobStatus::kFailed, {std::string("boom"), int64_t{0}, std::nullopt});
      },
  };
}

// A digest of everything the store holds about `id`, to compare before and after a failure.
std::string snapshot(JobStore& s, int64_t id) {
  if (id == 0) return std::to_string(s.list_jobs().size()) + " jobs";
  const Job j = s.require_job(id);
  std::string out = to_string(j.status) + " pid " + std::to_string(j.pid);
  out += " events " + std::to_string(s.events_since(id, 0).size());
  out += " logs " + std::to_string(s.logs_tail(id, 100).size());
  out += " metrics " + std::to_string(s.metrics(id).size());
  return out;
}

std::string integrity(const std::string& db_path) {
  SqliteDb db(db_path);
  Statement st = db.prepare("PRAGMA integrity_check");
  return st.step() ? st.col_text(0) : "no answer";
}

TEST(JobStateFaults, EveryOpOfAJobsLifeFailsCleanlyAndSucceedsOnRetry) {
  Injector inj;
  if (!inj.loaded()) GTEST_SKIP() << "run with LD_PRELOAD of the fault library (ctest does)";
  TempDir dir;
  const std::string db = dir.str("ktl.db");
  long total = 0;
  std::string want;  // the job after an undisturbed life
  {
    JobStore store(db);
    int64_t id = 0;
    inj.count_only(db);
    for (auto& step : job_life()) step(store, id);
    total = inj.count();
    inj.off();
    want = snapshot(store, id);
  }
  ASSERT_GT(total, 10);
  int failures = 0;
  for (long n = 1; n <= total; ++n) {
    SCOPED_TRACE("fault at op " + std::to_string(n) + " of " + std::to_string(total));
    const int err = n % 2 ? ENOSPC : EIO;
    fs::remove(db), fs::remove(db + "-wal"), fs::remove(db + "-shm");
    JobStore store(db);
    int64_t id = 0;
    inj.fail_at(db, n, err);
    for (auto& step : job_life()) {
      const std::string before = snapshot(store, id);
      try {
        step(store, id);
        continue;
      } catch (const std::exception& e) {
        ++failures;
        inj.off();
        EXPECT_NE(std::string(e.what()).find(db), std::string::npos) << e.what();
        EXPECT_EQ(snapshot(store, id), before) << "a failed write changed the job";
        EXPECT_EQ(integrity(db), "ok");
        step(store, id);  // the disk is back: the same change goes through
      }
    }
    inj.off();
    EXPECT_EQ(snapshot(store, id), want);
  }
  std::printf("job life: %ld database ops, %d injected failures surfaced as errors\n", total,
              failures);
  EXPECT_GT(failures, 0);
}

TEST(JobStateFaults, RunnerRecordsTheEndOnceTheDiskIsBack) {
  Injector inj;
  if (!inj.loaded()) GTEST_SKIP() << "run with LD_PRELOAD of the fault library (ctest does)";
  TempDir dir;
  fs::create_directories(dir.path() / "data" / "shards");
  std::ofstream(dir.path() / "data" / "training.yaml") << "max_steps: 10\n";
  std::ofstream(dir.path() / "data" / "model.yaml") << "dim: 64\n";
  const std::string script = dir.str("child.sh");
  // The child runs a moment, then fails; meanwhile the disk fills.
  std::ofstream(script) << "#!/bin/sh\nsleep 1\necho 'out of ideas' >&2\nexit 3\n";
  fs::permissions(script, fs::perms::owner_all);
  const std::string db = dir.str("ktl.db");
  JobStore store(db);
  JobSpecContext ctx;
  ctx.data_dir = dir.str("data");
  JobRunnerOptions o;
  o.executable = script;
  o.spec_ctx = ctx;
  JobRunner runner(store, o);
  runner.start();
  auto spec = validate_job_spec(
      {{"kind", "train"},
       {"name", "full-disk"},
       {"options", {{"config", "training.yaml"}, {"model_config", "model.yaml"}, {"data", "shards"}}}},
      ctx);
  const Job j = runner.submit(spec);
  ASSERT_TRUE(eventually([&] { return store.require_job(j.id).pid > 0; }));
  inj.fail_at(db, 1, ENOSPC, /*sticky=*/true);  // from now on every write fails
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // the child ended meanwhile
  // Read while the disk is still full (a read writes nothing): the end could not be recorded.
  EXPECT_EQ(store.require_job(j.id).status, JobStatus::kRunning);
  inj.off();
  ASSERT_TRUE(eventually([&] { return store.require_job(j.id).status == JobStatus::kFailed; }));
  EXPECT_NE(store.require_job(j.id).error.find("exit"), std::string::npos)
      << store.require_job(j.id).error;
  runner.stop();
  EXPECT_EQ(integrity(db), "ok");
}

}  // namespace
}  // namespace ktl::jobs
