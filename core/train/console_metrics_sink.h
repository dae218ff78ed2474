// MetricsSink for the terminal: prints log lines (the trainer's progress and eval lines),
// samples and checkpoints to a stream; individual metric() values are not printed (the
// progress line already shows them) unless `print_metrics` is set.
// Thread-safe: one mutex around the stream.
#pragma once

#include <cstdio>
#include <mutex>

#include "core/train/metrics_sink.h"

namespace ktl {

class ConsoleMetricsSink : public MetricsSink {
 public:
  explicit ConsoleMetricsSink(std::FILE* out = stdout, bool print_metrics = false)
      : out_(out), print_metrics_(print_metrics) {}
  void metric(const std::string& key, int64_t step, double value) override;
  void sample(int64_t step, const std::string& prompt, const std::string& text,
              const std::string& kind) override;
  void checkpoint(int64_t step, const std::string& path,
                  const std::map<std::string, double>& metrics) override;
  void log(const std::string& line) override;
  void flush() override;

 private:
  std::FILE* out_;
  bool print_metrics_;
  std::mutex mu_;
};

}  // namespace ktl
