// Runs queued jobs as child processes (`ktl train ...`), at most N at a time, so a crash or an
// OOM in training never takes the server down. The queue is the store itself (status queued,
// oldest first), so queued jobs survive a restart.
//
// Per running job one monitor thread starts the child (each stage of a pipeline in turn),
// copies its stdout/stderr lines into the logs table, reaps it and records the outcome:
//   exit 0 -> succeeded; non-zero or killed -> failed (error names the code and last line);
//   cancel requested -> cancelled whatever the exit (the trainer checkpoints on SIGTERM and exits
//   0); stop() (server shutdown) -> interrupted, resumable later.
// cancel = SIGTERM to the child's process group, then SIGKILL after cancel_grace_ms.
// resume = back to queued with --resume-from <last checkpoint dir that still exists>.
//
// Thread-safe: every public method may be called from any thread (HTTP handlers do).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "jobs/job.h"
#include "jobs/job_spec.h"
#include "jobs/job_store.h"

namespace ktl::jobs {

struct JobRunnerOptions {
  std::string executable;       // the program run as child; "" = this program (/proc/self/exe)
  JobSpecContext spec_ctx;      // data dir and roots (default output dirs)
  int max_concurrent = 1;       // jobs running at once
  int cancel_grace_ms = 60000;  // SIGTERM -> SIGKILL: time to write the final checkpoint
  int stop_grace_ms = 30000;    // same at server shutdown (then the job becomes interrupted)
  // at start(): resume interrupted jobs (their server crashed or was stopped while they ran)
  bool auto_resume_interrupted = false;
  size_t max_log_line = 8192;            // longer output lines are cut (with a marker)
};

class JobRunner {
 public:
  JobRunner(JobStore& store, JobRunnerOptions opts);
  ~JobRunner();  // stop()
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Recovery, then scheduling: jobs the store still shows `running` (their server died) become
  // interrupted; with auto_resume_interrupted every interrupted job (a crash's or an orderly
  // stop's) is resumed; then queued jobs start.
  void start();
  // Stops scheduling; running children get SIGTERM (SIGKILL after stop_grace_ms) and their
  // jobs become interrupted. Idempotent.
  void stop();

  // Creates a queued job from a validated spec and wakes the scheduler.
  Job submit(const ValidatedSpec& spec);
  // Queued -> cancelled at once; running -> stop requested (the job turns cancelled when the
  // child exits). Throws JobNotFound, JobStateError (any other status).
  Job cancel(int64_t id);
  // failed|cancelled|interrupted -> queued, continuing from the last checkpoint that still
  // exists (train and pipeline jobs; others start over). Throws JobNotFound, JobStateError
  // (also while the child a crashed server left behind is still stopping).
  Job resume(int64_t id);
  // Wakes the scheduler (after a job was queued by other means).
  void notify();

  std::vector<int64_t> running_ids() const;
  bool cancel_requested(int64_t id) const;
  // For tests and shutdown: true once nothing runs and nothing is queued (false on timeout).
  bool wait_idle(std::chrono::milliseconds timeout);
  const std::string& executable() const { return opts_.executable; }
  const JobSpecContext& spec_context() const { return opts_.spec_ctx; }
  // True once stop() began (long-lived readers such as event streams should end).
  bool stopping() const;

 private:
  struct Running {
    int64_t job_id = 0;
    std::atomic<bool> cancel{false};    // user asked to cancel
    std::atomic<bool> shutdown{false};  // server stopping
    std::atomic<bool> done{false};
    std::thread thread;
  };

  void scheduler_loop();
  void start_ready_locked();  // with mu_ held
  void reap_done_locked();
  void monitor(std::shared_ptr<Running> r, Job job);
  // Writes a finished job's status, retrying while the database refuses (a full disk).
  void record_outcome(int64_t id, JobStatus to, const std::string& error);
  // Runs one stage; returns its exit, or nullopt-like failure via `error`.
  bool run_stage(Running& r, const Job& job, const JobStage& stage, std::string& error);

  JobStore& store_;
  JobRunnerOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, std::shared_ptr<Running>> running_;
  bool started_ = false;
  bool stopping_ = false;
  std::thread scheduler_;
};

}  // namespace ktl::jobs
