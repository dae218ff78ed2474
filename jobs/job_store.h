// The training daemon's store: one SQLite file (WAL) holding jobs, their params, metrics,
// samples, checkpoints, events and logs. The server owns it; children write their reports
// through SqliteMetricsSink on their own connections to the same file.
// Thread-safe: every method takes an internal mutex (one connection per JobStore).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "jobs/job.h"
#include "jobs/job_db.h"
#include "jobs/sqlite_db.h"

namespace ktl::jobs {

struct JobNotFound : std::runtime_error {
  explicit JobNotFound(int64_t id)
      : std::runtime_error("job " + std::to_string(id) + " not found") {}
};

// A refused status transition (e.g. cancel a succeeded job).
struct JobStateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct NewJob {
  JobKind kind = JobKind::kTrain;
  std::string name;
  std::string spec_json;
  std::map<std::string, std::string> params;  // flat view of the options (for listing/search)
  // Computes output_dir from the new id inside the creating transaction; null = "".
  std::function<std::string(int64_t id)> output_dir_for;
};

// Optional fields written with a status change.
struct StatusChange {
  std::optional<std::string> error;
  std::optional<int64_t> pid;
  std::optional<std::string> resume_from;
};

class JobStore {
 public:
  // Opens (creating and migrating when needed) the database at `db_path`.
  explicit JobStore(const std::string& db_path);

  const std::string& db_path() const { return db_path_; }

  // Inserts a queued job with its params and a "status" event, all in one transaction.
  Job create_job(const NewJob& j);
  std::optional<Job> get_job(int64_t id);
  Job require_job(int64_t id);  // throws JobNotFound
  // Newest first; `status` filters; `limit` caps.
  std::vector<Job> list_jobs(std::optional<JobStatus> status = std::nullopt, int limit = 1000);
  // Oldest queued job, if any.
  std::optional<Job> next_queued();

  // Compare-and-set: moves the job from its current status to `to` if allowed, updates the
  // timestamps (started_at on running, finished_at on terminal states, both cleared and
  // resume_count+1 on going back to queued) and writes a "status" event, atomically.
  // Throws JobNotFound or JobStateError (nothing written).
  Job update_status(int64_t id, JobStatus to, const StatusChange& change = {});
  void set_pid(int64_t id, int64_t pid);

  // At start-up: every job still `running` belonged to a server that died. Marks them
  // interrupted (with an event) and returns them. Their pid is kept: the orphaned child may
  // still be finishing (it got SIGTERM when the server died); see job_process_alive().
  std::vector<Job> mark_running_interrupted();

  std::map<std::string, std::string> params(int64_t job_id);

  // Writers (each one transaction). The child writes through SqliteMetricsSink instead.
  void add_metrics(int64_t job_id, const std::vector<MetricPoint>& points);
  void add_sample(int64_t job_id, const SampleRecord& s);
  void add_checkpoint(int64_t job_id, const CheckpointRecord& c);
  void set_progress(int64_t job_id, int64_t step, int64_t total);
  void append_logs(int64_t job_id, const std::vector<std::string>& lines);
  int64_t add_event(int64_t job_id, const std::string& type, const std::string& payload_json);

  // Readers. Series are ordered by (key, step); `key` empty = every key.
  std::vector<MetricPoint> metrics(int64_t job_id, const std::string& key = "",
                                   int64_t since_step = INT64_MIN, int limit = 100000);
  std::vector<MetricPoint> latest_metrics(int64_t job_id);
  std::vector<SampleRecord> samples(int64_t job_id, int64_t since_step = INT64_MIN,
                                    int limit = 1000);
  std::vector<CheckpointRecord> checkpoints(int64_t job_id);  // by step
  // Removes the rows of checkpoints whose directory is gone (rotation deleted it, but a crash
  // came before the trainer's report of that reached the database); returns how many.
  int prune_missing_checkpoints(int64_t job_id);
  // Events with id > after_id, oldest first; job_id 0 = every job.
  std::vector<EventRecord> events_since(int64_t job_id, int64_t after_id, int limit = 1000);
  // The last `n` lines, oldest first.
  std::vector<LogLine> logs_tail(int64_t job_id, int n);
  std::vector<LogLine> logs_since(int64_t job_id, int64_t after_id, int limit = 1000);

 private:
  Job read_job_locked(int64_t id, bool* found);
  std::string db_path_;
  std::mutex mu_;
  SqliteDb db_;
};

}  // namespace ktl::jobs
