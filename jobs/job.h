// A training-daemon job: what it is (kind, spec) and where it stands (status, progress).
// Plain data; the lifecycle rules live in job_status_transition_allowed(). Thread-safe (no state).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ktl::jobs {

// Lifecycle of a job. Allowed transitions (anything else is refused by JobStore):
//   queued      -> running      the runner started its child process
//   queued      -> cancelled    cancelled before it started
//   running     -> succeeded    child exited 0 (all stages of a pipeline)
//   running     -> failed       child exited non-zero, was killed, or could not start
//   running     -> cancelled    cancel requested; child stopped (checkpointed) or was killed
//   running     -> interrupted  found `running` at start-up: the server died while it ran
//   interrupted -> queued       resume (from the last checkpoint when there is one)
//   failed      -> queued       resume / retry
//   cancelled   -> queued       resume
// succeeded is final.
enum class JobStatus { kQueued, kRunning, kSucceeded, kFailed, kCancelled, kInterrupted };

// What the child runs. kPipeline = prepare-data, then train on the prepared data (one job,
// two child processes in sequence; see job_spec.h). kSweep = `ktl sweep`: many short trainings
// in one child; a resumed sweep continues from its output dir's sweep_state.json. kSft / kDpo =
// `ktl sft` / `ktl dpo` (instruction and preference tuning from a checkpoint). kDistill = `ktl
// distill` (a draft model trained on a teacher's outputs, for speculative decoding).
enum class JobKind {
  kPrepareData,
  kTrainTokenizer,
  kTrain,
  kEval,
  kPipeline,
  kSweep,
  kSft,
  kDpo,
  kDistill
};

bool job_status_transition_allowed(JobStatus from, JobStatus to);
// succeeded, failed, cancelled, interrupted: no child runs and none will without a resume.
bool job_status_is_terminal(JobStatus s);
// failed, cancelled, interrupted: may go back to queued.
bool job_status_is_resumable(JobStatus s);

// Lowercase names used in the database, the API and the CLI ("queued", "prepare-data", ...).
std::string to_string(JobStatus s);
std::string to_string(JobKind k);
std::optional<JobStatus> parse_job_status(std::string_view s);
std::optional<JobKind> parse_job_kind(std::string_view s);

struct Job {
  int64_t id = 0;
  JobKind kind = JobKind::kTrain;
  std::string name;
  std::string spec_json;  // validated spec: {"kind","name","options":{...}} with absolute paths
  JobStatus status = JobStatus::kQueued;
  int64_t progress_step = 0;   // last step the child reported
  int64_t progress_total = 0;  // 0 = unknown
  double created_at = 0;       // Unix seconds; 0 = not yet
  double started_at = 0;
  double finished_at = 0;
  std::string error;         // why it failed (empty otherwise)
  std::string output_dir;    // where the job writes (checkpoints for train)
  int64_t pid = 0;           // child pid while running; for interrupted, the child that may
                             // still be stopping; else 0
  int64_t resume_count = 0;  // times it went back to queued
  std::string resume_from;   // checkpoint dir the next run continues from; empty = from scratch
};

}  // namespace ktl::jobs
