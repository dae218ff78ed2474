// JobRunner with fake children: a shell script (exit codes, output, SIGTERM handling) and this
// test binary itself re-executed as a fake `ktl train` that reports through the job sink and
// writes checkpoint directories (resume). No trainer needed.
#include "jobs/job_runner.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "jobs/child_process.h"
#include "jobs/child_reporting.h"
#include "tests/support/job_test_util.h"

namespace ktl::jobs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::eventually;
using testing::TempDir;

// ---- fake `ktl train` (runs instead of the tests when re-executed with "train") ----

volatile sig_atomic_t g_stop = 0;

int fake_trainer(const std::vector<std::string>& argv) {
  std::map<std::string, std::string> f;
  for (size_t i = 2; i < argv.size(); ++i) {
    std::string a = argv[i].substr(2);
    if (auto eq = a.find('='); eq != std::string::npos)
      f[a.substr(0, eq)] = a.substr(eq + 1);
    else if (i + 1 < argv.size())
      f[a] = argv[++i];
  }
  struct sigaction sa {};
  // Like `ktl train`: the first SIGTERM asks for a checkpoint and exit, a second one kills.
  sa.sa_handler = [](int sig) {
    g_stop = 1;
    signal(sig, SIG_DFL);
  };
  sigaction(SIGTERM, &sa, nullptr);
  int max_steps = std::stoi(f.count("max-steps") ? f["max-steps"] : "20");
  const int step_ms = 10;
  int save = std::stoi(f.count("save-steps") ? f["save-steps"] : "5");
  int start = 0;
  if (f.count("resume-from")) {
    std::string d = fs::path(f["resume-from"]).filename().string();
    start = std::stoi(d.substr(d.find('-') + 1));
    std::printf("resumed from step %d\n", start);
  }
  auto sink = make_job_sink(f["job-db"], std::stoll(f["job-id"]));
  for (int step = start + 1; step <= max_steps; ++step) {
    std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
    sink->metric("train/loss", step, 10.0 / step);
    sink->progress(step, max_steps);
    if (step % save == 0 || g_stop) {
      fs::path ck = fs::path(f["output-dir"]) / ("checkpoint-" + std::to_string(step));
      fs::create_directories(ck);
      sink->checkpoint(step, ck.string(), {{"train/loss", 10.0 / step}});
    }
    if (g_stop) {
      std::printf("stopped at step %d\n", step);
      std::fflush(stdout);
      return 0;
    }
  }
  std::printf("finished %d steps\n", max_steps);
  std::fflush(stdout);
  return 0;
}

// "<self> fake-serve DB DATA_DIR": a stand-in server process that runs queued jobs until it
// is killed (the crash test kills it with SIGKILL).
int fake_server(const std::vector<std::string>& argv) {
  JobStore store(argv.at(2));
  JobRunnerOptions o;
  o.executable = argv.at(0);
  o.spec_ctx.data_dir = argv.at(3);
  JobRunner runner(store, o);
  runner.start();
  while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
}

// Runs at static initialisation: when this binary was started as "<self> train ..." by a
// JobRunner under test, act as the trainer (or as a server) and never reach main().
const bool kFakeTrainerRan = [] {
  if (!std::getenv("KTL_FAKE_TRAINER")) return false;
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> argv;
  for (std::string a; std::getline(in, a, '\0');) argv.push_back(a);
  if (argv.size() < 2 || (argv[1] != "train" && argv[1] != "fake-serve")) return false;
  int code = 1;
  try {
    code = argv[1] == "train" ? fake_trainer(argv) : fake_server(argv);
  } catch (const std::exception& e) {
    std::printf("fake trainer: %s\n", e.what());
  }
  std::fflush(stdout);
  _exit(code);
}();

// ---- fixture ----

// The fake `ktl train`: runs --max-steps ticks of 50 ms. Exit code and SIGTERM handling are
// baked in per script (write_script), since a job spec only passes real training keys.
std::string fake_script(int exit_code, bool ignore_term) {
  return std::string(R"(#!/bin/sh
cmd=$1; shift
ticks=0; code=)") +
         std::to_string(exit_code) + "; ignore=" + (ignore_term ? "true" : "false") + R"(
for a in "$@"; do
  case "$a" in
    --max-steps=*) ticks=${a#--max-steps=} ;;
  esac
done
if [ "$ignore" = "true" ]; then trap '' TERM; else trap 'echo "got TERM, checkpointing"; exit 0' TERM; fi
echo "fake $cmd start"
i=0
while [ $i -lt $ticks ]; do sleep 0.05; i=$((i+1)); done
echo "last words of $cmd" >&2
exit $code
)";
}

class JobRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.path() / "data" / "shards");
    std::ofstream(dir_.path() / "data" / "training.yaml") << "max_steps: 10\n";
    std::ofstream(dir_.path() / "data" / "model.yaml") << "dim: 64\n";
    script_ = write_script("fake-ktl.sh", 0, false);
    ctx_.data_dir = dir_.str("data");
    store_ = std::make_unique<JobStore>(dir_.str("jobs.db"));
  }

  std::string write_script(const std::string& name, int exit_code, bool ignore_term) {
    std::string path = dir_.str(name);
    std::ofstream(path) << fake_script(exit_code, ignore_term);
    fs::permissions(path, fs::perms::owner_all);
    return path;
  }

  std::unique_ptr<JobRunner> make_runner(const std::string& exe, int max_concurrent = 1,
                                         int grace_ms = 5000) {
    JobRunnerOptions o;
    o.executable = exe;
    o.spec_ctx = ctx_;
    o.max_concurrent = max_concurrent;
    o.cancel_grace_ms = grace_ms;
    o.stop_grace_ms = grace_ms;
    return std::make_unique<JobRunner>(*store_, o);
  }

  ValidatedSpec spec(const json& overrides) {
    json opts = {{"config", "training.yaml"}, {"model_config", "model.yaml"}, {"data", "shards"}};
    for (auto it = overrides.begin(); it != overrides.end(); ++it) opts[it.key()] = it.value();
    return validate_job_spec({{"kind", "train"}, {"name", "t"}, {"options", opts}}, ctx_);
  }

  JobStatus status(int64_t id) { return store_->require_job(id).status; }
  bool reaches(int64_t id, JobStatus s) {
    return eventually([&] { return status(id) == s; });
  }
  std::string all_logs(int64_t id) {
    std::string s;
    for (const auto& l : store_->logs_tail(id, 1000)) s += l.line + "\n";
    return s;
  }

  TempDir dir_;
  std::string script_;
  JobSpecContext ctx_;
  std::unique_ptr<JobStore> store_;
};

TEST_F(JobRunnerTest, QueuedRunningSucceededWithLogsCaptured) {
  auto runner = make_runner(script_);
  Job j = runner->submit(spec({{"max_steps", 2}}));
  EXPECT_EQ(j.status, JobStatus::kQueued);
  runner->start();
  ASSERT_TRUE(reaches(j.id, JobStatus::kSucceeded)) << all_logs(j.id);
  Job done = store_->require_job(j.id);
  EXPECT_GT(done.started_at, 0);
  EXPECT_GE(done.finished_at, done.started_at);
  EXPECT_EQ(done.pid, 0);
  EXPECT_TRUE(fs::is_directory(done.output_dir));  // created before the child started
  std::string logs = all_logs(j.id);
  EXPECT_NE(logs.find("$ " + script_ + " train --config"), std::string::npos) << logs;
  EXPECT_NE(logs.find("fake train start"), std::string::npos) << logs;
  EXPECT_NE(logs.find("last words of train"), std::string::npos) << logs;  // stderr too
  std::vector<std::string> seen;
  for (const auto& e : store_->events_since(j.id, 0))
    if (e.type == "status") seen.push_back(json::parse(e.payload_json)["to"]);
  EXPECT_EQ(seen, (std::vector<std::string>{"queued", "running", "succeeded"}));
}

TEST_F(JobRunnerTest, NonZeroExitFailsWithTheReason) {
  auto runner = make_runner(write_script("exit-3.sh", 3, false));
  runner->start();
  Job j = runner->submit(spec({}));
  ASSERT_TRUE(reaches(j.id, JobStatus::kFailed));
  std::string err = store_->require_job(j.id).error;
  EXPECT_NE(err.find("exited with code 3"), std::string::npos) << err;
  EXPECT_NE(err.find("last words of train"), std::string::npos) << err;
}

TEST_F(JobRunnerTest, MissingExecutableFails) {
  auto runner = make_runner(dir_.str("no-such-ktl"));
  runner->start();
  Job j = runner->submit(spec({}));
  ASSERT_TRUE(reaches(j.id, JobStatus::kFailed));
  EXPECT_NE(store_->require_job(j.id).error.find("code 127"), std::string::npos);
  EXPECT_NE(all_logs(j.id).find("cannot execute"), std::string::npos);
}

TEST_F(JobRunnerTest, CancelRunningSendsSigtermAndEndsCancelled) {
  auto runner = make_runner(script_);
  runner->start();
  Job j = runner->submit(spec({{"max_steps", 600}}));
  ASSERT_TRUE(eventually([&] { return all_logs(j.id).find("start") != std::string::npos; }));
  runner->cancel(j.id);
  ASSERT_TRUE(reaches(j.id, JobStatus::kCancelled));
  EXPECT_NE(all_logs(j.id).find("got TERM, checkpointing"), std::string::npos);
  EXPECT_THROW(runner->cancel(j.id), JobStateError);
}

TEST_F(JobRunnerTest, CancelKillsAChildThatIgnoresSigterm) {
  auto runner = make_runner(write_script("ignore-term.sh", 0, true), 1, /*grace_ms=*/300);
  runner->start();
  Job j = runner->submit(spec({{"max_steps", 600}}));
  ASSERT_TRUE(eventually([&] { return all_logs(j.id).find("start") != std::string::npos; }));
  runner->cancel(j.id);
  ASSERT_TRUE(reaches(j.id, JobStatus::kCancelled));
  EXPECT_EQ(all_logs(j.id).find("got TERM"), std::string::npos);
  EXPECT_TRUE(runner->running_ids().empty() ||
              eventually([&] { return runner->running_ids().empty(); }));
}

// Like `ktl serve`: a SIGTERM handler that writes to a self-pipe (not CLOEXEC here, as the
// server's was) and would stop the server. A cancel sent while the child is still between
// fork and exec must end the job, never reach this handler.
int g_server_pipe[2] = {-1, -1};
void on_server_term(int) {
  const char b = 't';
  ssize_t r = write(g_server_pipe[1], &b, 1);
  (void)r;
}

TEST_F(JobRunnerTest, CancelRightAfterSubmitNeverSignalsTheRunnerProcess) {
  ASSERT_EQ(pipe(g_server_pipe), 0);
  fcntl(g_server_pipe[0], F_SETFL, O_NONBLOCK);
  struct sigaction sa {
  }, old{};
  sa.sa_handler = on_server_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &old);
  auto runner = make_runner(script_);
  runner->start();
  std::vector<int64_t> ids;
  for (int i = 0; i < 30; ++i) {
    Job j = runner->submit(spec({{"max_steps", 600}}));
    // Wait until the runner has taken it, so the cancel races the spawn (not the queue).
    ASSERT_TRUE(
        eventually([&] { return status(j.id) != JobStatus::kQueued; }, std::chrono::seconds(10)));
    try {
      runner->cancel(j.id);
    } catch (const JobStateError&) {
    }
    ASSERT_TRUE(reaches(j.id, JobStatus::kCancelled)) << "round " << i << "\n" << all_logs(j.id);
    ids.push_back(j.id);
  }
  char buf[64];
  ssize_t got = read(g_server_pipe[0], buf, sizeof(buf));
  sigaction(SIGTERM, &old, nullptr);
  close(g_server_pipe[0]);
  close(g_server_pipe[1]);
  EXPECT_LE(got, 0) << "the runner process's SIGTERM handler ran (in a child)";
}

TEST_F(JobRunnerTest, QueuedJobCancelsAtOnceAndConcurrencyIsLimited) {
  auto runner = make_runner(script_, 2);
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(runner->submit(spec({{"max_steps", 6}})).id);
  runner->cancel(ids[4]);
  EXPECT_EQ(status(ids[4]), JobStatus::kCancelled);
  runner->start();
  size_t most = 0;
  ASSERT_TRUE(eventually([&] {
    most = std::max(most, runner->running_ids().size());
    size_t in_db = store_->list_jobs(JobStatus::kRunning).size();
    most = std::max(most, in_db);
    return runner->wait_idle(std::chrono::milliseconds(0));
  }));
  EXPECT_LE(most, 2u);
  EXPECT_GE(most, 1u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(status(ids[i]), JobStatus::kSucceeded);
}

TEST_F(JobRunnerTest, StopInterruptsAndStartRecoversRunningJobs) {
  int64_t id;
  {
    auto runner = make_runner(script_);
    runner->start();
    id = runner->submit(spec({{"max_steps", 600}})).id;
    ASSERT_TRUE(reaches(id, JobStatus::kRunning));
    runner->stop();  // server shutdown
  }
  EXPECT_EQ(status(id), JobStatus::kInterrupted);
  // A crash leaves `running` behind: the next start marks it interrupted.
  Job other = store_->create_job({JobKind::kTrain, "x", spec({}).to_json(), {}, nullptr});
  store_->update_status(other.id, JobStatus::kRunning);
  auto runner = make_runner(script_);
  runner->start();
  EXPECT_EQ(status(other.id), JobStatus::kInterrupted);
  EXPECT_THROW(runner->resume(999), JobNotFound);
  runner->resume(id);
  ASSERT_TRUE(reaches(id, JobStatus::kRunning));
  runner->cancel(id);
  ASSERT_TRUE(reaches(id, JobStatus::kCancelled));
}

TEST_F(JobRunnerTest, FakeTrainerCancelThenResumeContinuesFromItsCheckpoint) {
  ::setenv("KTL_FAKE_TRAINER", "1", 1);
  auto runner = make_runner(fs::read_symlink("/proc/self/exe").string());
  runner->start();
  Job j = runner->submit(spec({{"max_steps", 400}, {"save_steps", 5}}));
  ASSERT_TRUE(eventually([&] { return store_->require_job(j.id).progress_step >= 12; }))
      << all_logs(j.id);
  runner->cancel(j.id);
  ASSERT_TRUE(reaches(j.id, JobStatus::kCancelled)) << all_logs(j.id);
  auto cps = store_->checkpoints(j.id);
  ASSERT_FALSE(cps.empty()) << all_logs(j.id);
  int64_t stopped_at = cps.back().step;  // checkpoint written on SIGTERM
  EXPECT_NE(all_logs(j.id).find("stopped at step " + std::to_string(stopped_at)),
            std::string::npos);
  EXPECT_EQ(store_->metrics(j.id, "train/loss").back().step, stopped_at);

  // A succeeded job cannot be resumed; a cancelled one continues where it stopped.
  Job q = runner->resume(j.id);
  EXPECT_EQ(q.resume_from, cps.back().path);
  EXPECT_EQ(q.resume_count, 1);
  ASSERT_TRUE(
      eventually([&] { return store_->require_job(j.id).progress_step >= stopped_at + 3; }));
  runner->cancel(j.id);
  ASSERT_TRUE(reaches(j.id, JobStatus::kCancelled));
  EXPECT_NE(all_logs(j.id).find("resumed from step " + std::to_string(stopped_at)),
            std::string::npos);
  auto series = store_->metrics(j.id, "train/loss");
  for (size_t i = 1; i < series.size(); ++i)
    ASSERT_EQ(series[i].step, series[i - 1].step + 1) << "steps continue, not from zero";
  EXPECT_THROW(runner->resume(j.id + 100), JobNotFound);
}

TEST_F(JobRunnerTest, ResumeWaitsForTheChildACrashedServerLeftBehind) {
  Job j = store_->create_job(
      {JobKind::kTrain, "orphan", spec({{"max_steps", 600}}).to_json(), {}, nullptr});
  auto orphan = std::make_unique<ChildProcess>(
      script_,
      std::vector<std::string>{"train", "--max-steps=600", "--job-id", std::to_string(j.id)});
  int64_t pid = orphan->pid();
  ASSERT_TRUE(eventually([&] { return job_process_alive(pid, j.id); }));
  EXPECT_FALSE(job_process_alive(pid, j.id + 1));
  store_->update_status(j.id, JobStatus::kRunning, {std::nullopt, pid, {}});
  auto runner = make_runner(script_);
  runner->start();  // the "restarted server"
  Job found = store_->require_job(j.id);
  EXPECT_EQ(found.status, JobStatus::kInterrupted);
  EXPECT_EQ(found.pid, pid);
  EXPECT_THROW(runner->resume(j.id), JobStateError);  // the old child still runs
  orphan.reset();                                     // it finishes (killed and reaped)
  EXPECT_FALSE(job_process_alive(pid, j.id));
  runner->resume(j.id);
  ASSERT_TRUE(reaches(j.id, JobStatus::kRunning));
  runner->cancel(j.id);
  ASSERT_TRUE(reaches(j.id, JobStatus::kCancelled));
}

TEST_F(JobRunnerTest, ServerKilledWithSigkillLosesNoMetricsAndResumesFromCheckpoint) {
  ::setenv("KTL_FAKE_TRAINER", "1", 1);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  Job j = store_->create_job({JobKind::kTrain,
                              "crash",
                              spec({{"max_steps", 100000}, {"save_steps", 5}}).to_json(),
                              {},
                              nullptr});
  auto server = std::make_unique<ChildProcess>(
      self, std::vector<std::string>{"fake-serve", store_->db_path(), ctx_.data_dir});
  ASSERT_TRUE(eventually([&] { return store_->require_job(j.id).progress_step >= 12; }));
  int64_t trainer_pid = store_->require_job(j.id).pid;
  ASSERT_TRUE(job_process_alive(trainer_pid, j.id));
  ::kill(server->pid(), SIGKILL);  // the server crashes; the trainer is told by PDEATHSIG
  server.reset();
  ASSERT_TRUE(eventually([&] { return !job_process_alive(trainer_pid, j.id); }));

  auto runner = make_runner(self);  // the restarted server
  runner->start();
  ASSERT_EQ(status(j.id), JobStatus::kInterrupted);
  auto series = store_->metrics(j.id, "train/loss");
  auto cps = store_->checkpoints(j.id);
  ASSERT_FALSE(cps.empty());
  int64_t last = cps.back().step;  // the trainer checkpointed on SIGTERM and said so
  EXPECT_EQ(series.back().step, last);
  for (size_t i = 0; i < series.size(); ++i) ASSERT_EQ(series[i].step, int64_t(i) + 1);

  Job q = runner->resume(j.id);
  EXPECT_EQ(q.resume_from, cps.back().path);
  ASSERT_TRUE(eventually([&] { return store_->require_job(j.id).progress_step >= last + 3; }));
  runner->cancel(j.id);
  ASSERT_TRUE(reaches(j.id, JobStatus::kCancelled));
  series = store_->metrics(j.id, "train/loss");
  EXPECT_EQ(series[last].step, last + 1);  // continued from its checkpoint, not from zero
  EXPECT_NE(all_logs(j.id).find("resumed from step " + std::to_string(last)), std::string::npos);
}

TEST_F(JobRunnerTest, SucceededJobsCannotBeResumedOrCancelled) {
  auto runner = make_runner(script_);
  runner->start();
  Job j = runner->submit(spec({}));
  ASSERT_TRUE(reaches(j.id, JobStatus::kSucceeded));
  EXPECT_THROW(runner->resume(j.id), JobStateError);
  EXPECT_THROW(runner->cancel(j.id), JobStateError);
}

}  // namespace
}  // namespace ktl::jobs
