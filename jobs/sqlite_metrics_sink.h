// MetricsSink for a training child: buffers what the trainer reports and writes it to the job
// database (the server's file, opened on the child's own connection) from a background thread,
// one transaction per flush. The training loop only appends to a vector under a mutex; it never
// waits for SQLite. Because the child writes directly, a server crash loses nothing it reported.
// Thread-safe: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/train/metrics_sink.h"
#include "jobs/job_db.h"

namespace ktl::jobs {

struct SqliteMetricsSinkOptions {
  int flush_interval_ms = 500;  // background flush period
  // log() lines go to the logs table too. Off by default: the runner already captures the
  // child's stdout/stderr (where the trainer prints them), so storing both would duplicate.
  bool store_logs = false;
  // Buffered rows above this are written at once by the background thread (bounds memory).
  size_t max_buffered = 10000;
};

class SqliteMetricsSink : public MetricsSink {
 public:
  // Opens `db_path` and checks that `job_id` exists; throws std::runtime_error otherwise.
  SqliteMetricsSink(const std::string& db_path, int64_t job_id,
                    const SqliteMetricsSinkOptions& opts = {});
  // Stops the background thread and writes everything still buffered.
  ~SqliteMetricsSink() override;

  void metric(const std::string& key, int64_t step, double value) override;
  void sample(int64_t step, const std::string& prompt, const std::string& text,
              const std::string& kind) override;
  void checkpoint(int64_t step, const std::string& path,
                  const std::map<std::string, double>& metrics) override;
  void checkpoint_deleted(int64_t step, const std::string& path) override;
  void progress(int64_t step, int64_t total_steps) override;
  void log(const std::string& line) override;
  // Writes everything buffered now and returns once it is committed; throws std::runtime_error
  // naming the database and the errno when it could not be (the rows stay buffered for a retry).
  // The trainer calls it before each checkpoint, so no checkpoint is ahead of its metrics.
  void flush() override;

  // Reports not yet committed to the database: buffered, being written, or kept after a failed
  // write for the next retry (for tests and diagnostics).
  size_t pending() const;

 private:
  struct Batch {
    std::vector<MetricPoint> metrics;
    std::vector<SampleRecord> samples;
    std::vector<CheckpointRecord> checkpoints;
    // Written after `checkpoints`: rotation only deletes checkpoints reported before.
    std::vector<CheckpointRecord> deleted_checkpoints;
    std::vector<std::string> logs;
    bool has_progress = false;
    int64_t progress_step = 0, progress_total = 0;
    size_t size() const {
      return metrics.size() + samples.size() + checkpoints.size() + deleted_checkpoints.size() +
             logs.size() + has_progress;
    }
  };

  void loop();
  void write_pending();  // takes write_mu_
  void enqueue_notify();

  int64_t job_id_;
  SqliteMetricsSinkOptions opts_;
  mutable std::mutex mu_;  // guards buf_, stop_
  std::condition_variable cv_;
  Batch buf_;
  size_t in_flight_ = 0;  // rows taken by the writer, not yet committed
  bool stop_ = false;
  std::string last_error_;  // of the last failed write; cleared by a successful one
  std::mutex write_mu_;  // serialises writers of db_ (background thread and flush())
  std::unique_ptr<SqliteDb> db_;
  std::thread thread_;
};

}  // namespace ktl::jobs
