// Where training reports what it measures. The CLI prints; the daemon stores in SQLite
// (jobs/sqlite_metrics_sink.h). Implementations must be cheap to call from the training loop:
// buffer and write in the background. Thread-safety: implementation-defined; the trainer calls
// from one thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ktl {

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  // e.g. ("train/loss", 120, 3.21), ("val/loss", ...), ("train/lr", ...), ("train/tokens_per_s",
  // ...)
  virtual void metric(const std::string& key, int64_t step, double value) = 0;
  // A generated continuation of a fixed prompt at `step`; `kind` is "greedy" or "sampled".
  virtual void sample(int64_t step, const std::string& prompt, const std::string& text,
                      const std::string& kind) = 0;
  virtual void checkpoint(int64_t step, const std::string& path,
                          const std::map<std::string, double>& metrics) = 0;
  // Checkpoint `path` (reported by checkpoint() before) was deleted by rotation.
  virtual void checkpoint_deleted(int64_t step, const std::string& path) {}
  // Progress for ETA: `step` of `total_steps`.
  virtual void progress(int64_t step, int64_t total_steps) {}
  // A human-readable log line (also printed).
  virtual void log(const std::string& line) = 0;
  // Makes everything reported so far durable; throws when it cannot (a full disk). The trainer
  // calls it before each checkpoint, so a resumed run never lacks rows from before its start.
  virtual void flush() {}
};

}  // namespace ktl
