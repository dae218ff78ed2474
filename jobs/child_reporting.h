// The child side of a job: `ktl train|sweep|eval|prepare-data|train-tokenizer ... --job-db DB
// --job-id N` reports through the sink make_job_sink returns; ChildSinks is the usual pairing
// with the console (the runner captures stdout into the logs table).
//
// Thread-safe: see SqliteMetricsSink.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/train/console_metrics_sink.h"
#include "core/train/metrics_sink.h"

namespace ktl::jobs {

// Opens the job database written by the server and returns a sink that stores metrics,
// samples, checkpoints and progress for `job_id` without blocking the caller. Also ignores
// SIGPIPE, so printing after the server (and so the stdout pipe's reader) died does not kill
// the child in the middle of its final checkpoint, and (Linux) while the sink lives, sends the
// process one SIGTERM when the server that started it dies (checked every 200 ms), in place of
// PR_SET_PDEATHSIG, which can arrive twice: install the SIGTERM handler once, it is enough. Throws
// std::runtime_error with a clear message when the database or the job is missing or job_id <= 0.
std::unique_ptr<MetricsSink> make_job_sink(const std::string& db_path, int64_t job_id);

// A sink that forwards every call to two others (e.g. console + job database).
std::unique_ptr<MetricsSink> make_tee_sink(MetricsSink& a, MetricsSink& b);

// The console, and also the job database when `db_path` is not empty (a command run by the
// daemon). Not copyable: sink() refers into it.
class ChildSinks {
 public:
  ChildSinks(const std::string& db_path, int64_t job_id);
  ChildSinks(const ChildSinks&) = delete;
  ChildSinks& operator=(const ChildSinks&) = delete;
  MetricsSink& sink() { return tee_ ? *tee_ : static_cast<MetricsSink&>(console_); }

 private:
  ConsoleMetricsSink console_;
  std::unique_ptr<MetricsSink> job_, tee_;
};

}  // namespace ktl::jobs
