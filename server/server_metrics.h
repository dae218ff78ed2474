// Server-side counters and histograms, rendered in the Prometheus text format (/metrics) and as
// the JSON twin (/v1/serving). Engine numbers (running, waiting, KV blocks, token totals) come
// from EngineStats at render time; the server adds HTTP statuses, finish reasons and latency
// histograms it measures per request.
//
// Thread-safety: every method is safe from any thread (one mutex; updates are a few adds).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/engine/engine.h"

namespace ktl::server {

// Cumulative-bucket histogram (Prometheus semantics). Not thread-safe on its own.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // Appends "<name>_bucket{le=...} n", "_sum", "_count" lines.
  void render(const std::string& name, const std::string& help, std::string* out) const;
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  // Upper bound of the bucket holding quantile q (0..1); 0 when empty. Coarse, for the twin.
  double quantile(double q) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), last one is +Inf
  uint64_t count_ = 0;
  double sum_ = 0;
};

// What the server knows about the served model when rendering.
struct ModelInfo {
  std::string name;   // empty when none
  std::string state;  // "ready" | "loading" | "none" | "failed"
  int max_context = 0;
  std::vector<AdapterInfo> adapters;  // LoRA adapters loaded in the serving engine
};

// One finished generation request, as logged.
struct RequestRecord {
  std::string finish;  // "stop" | "length" | "cancelled" | "error" | "rejected"
  int prompt_tokens = 0;
  int completion_tokens = 0;
  double ttft_s = -1;  // < 0: no token was produced
  double duration_s = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  void record_http_status(int status);
  void record_request(const RequestRecord& r);
  void stream_opened();
  void stream_closed();
  int active_streams() const;

  std::string render_prometheus(const std::optional<EngineStats>& stats,
                                const ModelInfo& model) const;
  std::string render_serving_json(const std::optional<EngineStats>& stats,
                                  const ModelInfo& model) const;

 private:
  mutable std::mutex mu_;
  std::map<int, uint64_t> http_by_status_;
  std::map<std::string, uint64_t> finished_by_reason_;
  uint64_t requests_total_ = 0;
  uint64_t prompt_tokens_ = 0;  // server-side sums (survive model swaps)
  uint64_t completion_tokens_ = 0;
  int active_streams_ = 0;
  Histogram ttft_;
  Histogram per_token_;
  Histogram duration_;
};

}  // namespace ktl::server
