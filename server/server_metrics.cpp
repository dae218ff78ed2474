#include "server/server_metrics.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

namespace ktl::server {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  ++count_;
  sum_ += v;
}

namespace {

std::string fmt_double(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

void header(std::string* out, const std::string& name, const char* type, const std::string& help) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void metric(std::string* out, const std::string& name, const char* type, const std::string& help,
            double v) {
  header(out, name, type, help);
  *out += name + " " + fmt_double(v) + "\n";
}

}  // namespace

void Histogram::render(const std::string& name, const std::string& help, std::string* out) const {
  header(out, name, "histogram", help);
  uint64_t cum = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i];
    std::string le = i < bounds_.size() ? fmt_double(bounds_[i]) : "+Inf";
    *out += name + "_bucket{le=\"" + le + "\"} " + std::to_string(cum) + "\n";
  }
  *out += name + "_sum " + fmt_double(sum_) + "\n";
  *out += name + "_count " + std::to_string(count_) + "\n";
}

double Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  const double target = q * static_cast<double>(count_);
  uint64_t cum = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    cum += counts_[i];
    if (static_cast<double>(cum) >= target)
      return i < bounds_.size() ? bounds_[i] : (bounds_.empty() ? 0 : bounds_.back());
  }
  return bounds_.empty() ? 0 : bounds_.back();
}

ServerMetrics::ServerMetrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      per_token_({0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1}),
      duration_({0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}) {}

void ServerMetrics::record_http_status(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++http_by_status_[status];
}

void ServerMetrics::record_request(const RequestRecord& r) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_total_;
  ++finished_by_reason_[r.finish];
  prompt_tokens_ += static_cast<uint64_t>(std::max(0, r.prompt_tokens));
  completion_tokens_ += static_cast<uint64_t>(std::max(0, r.completion_tokens));
  if (r.ttft_s >= 0) {
    ttft_.observe(r.ttft_s);
    if (r.completion_tokens > 1)
      per_token_.observe((r.duration_s - r.ttft_s) / (r.completion_tokens - 1));
  }
  duration_.observe(r.duration_s);
}

void ServerMetrics::stream_opened() {
  std::lock_guard<std::mutex> lock(mu_);
  ++active_streams_;
}

void ServerMetrics::stream_closed() {
  std::lock_guard<std::mutex> lock(mu_);
  --active_streams_;
}

int ServerMetrics::active_streams() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_streams_;
}

std::string ServerMetrics::render_prometheus(const std::optional<EngineStats>& stats,
                                             const ModelInfo& model) const {
  std::string out;
  const EngineStats s = stats.value_or(EngineStats{});
  metric(&out, "ktl_model_loaded", "gauge", "1 when a model is loaded and serving",
         model.state == "ready" ? 1 : 0);
  metric(&out, "ktl_model_loading", "gauge", "1 while a model is being loaded",
         model.state == "loading" ? 1 : 0);
  metric(&out, "ktl_requests_running", "gauge", "Sequences in the engine's running batch",
         s.running);
  metric(&out, "ktl_requests_waiting", "gauge", "Requests queued in the engine", s.waiting);
  metric(&out, "ktl_kv_blocks_total", "gauge", "KV-cache blocks in the pool", s.kv_blocks_total);
  metric(&out, "ktl_kv_blocks_used", "gauge", "KV-cache blocks in use", s.kv_blocks_used);
  metric(&out, "ktl_kv_blocks_free", "gauge", "KV-cache blocks free",
         s.kv_blocks_total - s.kv_blocks_used);
  metric(&out, "ktl_engine_prompt_tokens_total", "counter",
         "Prompt tokens the current engine processed", static_cast<double>(s.prompt_tokens_total));
  metric(&out, "ktl_engine_generation_tokens_total", "counter",
         "Tokens the current engine generated", static_cast<double>(s.generated_tokens_total));
  metric(&out, "ktl_prefix_cache_queries_total", "counter",
         "Prompt tokens looked up in the prefix cache",
         static_cast<double>(s.prefix_cache_queries));
  metric(&out, "ktl_prefix_cache_hits_total", "counter",
         "Prompt tokens served from the prefix cache", static_cast<double>(s.prefix_cache_hits));
  metric(&out, "ktl_prefix_cache_hit_rate", "gauge", "prefix_cache_hits / prefix_cache_queries",
         s.prefix_cache_queries ? static_cast<double>(s.prefix_cache_hits) /
                                      static_cast<double>(s.prefix_cache_queries)
                                : 0.0);
  metric(&out, "ktl_preemptions_total", "counter", "Sequences preempted for lack of KV blocks",
         static_cast<double>(s.preemptions));
  metric(&out, "ktl_engine_steps_total", "counter", "Engine steps", static_cast<double>(s.steps));
  metric(&out, "ktl_spec_draft_tokens_total", "counter",
         "Speculative decoding: draft tokens proposed", static_cast<double>(s.spec_proposed));
  metric(&out, "ktl_spec_accepted_tokens_total", "counter",
         "Speculative decoding: draft tokens verification kept",
         static_cast<double>(s.spec_accepted));
  metric(&out, "ktl_spec_verifications_total", "counter",
         "Speculative decoding: sequence-steps that verified draft tokens",
         static_cast<double>(s.spec_verifications));
  metric(&out, "ktl_spec_acceptance_rate", "gauge", "spec_accepted_tokens / spec_draft_tokens",
         s.spec_proposed ? static_cast<double>(s.spec_accepted) / s.spec_proposed : 0.0);
  metric(&out, "ktl_spec_mean_accepted_length", "gauge",
         "Draft tokens kept per verifying sequence-step (spec_accepted / spec_verifications)",
         s.spec_verifications ? static_cast<double>(s.spec_accepted) / s.spec_verifications : 0.0);
  metric(&out, "ktl_adapters_loaded", "gauge", "LoRA adapters loaded (draining ones included)",
         static_cast<double>(model.adapters.size()));
  if (!model.adapters.empty()) {
    header(&out, "ktl_adapter_requests_total", "counter",
           "Requests admitted per LoRA adapter since it was loaded");
    for (const auto& a : model.adapters)  // names are [A-Za-z0-9._:-]: no label escaping needed
      out += "ktl_adapter_requests_total{adapter=\"" + a.name + "\"} " +
             std::to_string(a.requests_total) + "\n";
    header(&out, "ktl_adapter_requests_in_flight", "gauge", "Requests running per LoRA adapter");
    for (const auto& a : model.adapters)
      out += "ktl_adapter_requests_in_flight{adapter=\"" + a.name + "\"} " +
             std::to_string(a.in_flight) + "\n";
  }

  std::lock_guard<std::mutex> lock(mu_);
  metric(&out, "ktl_http_streams_active", "gauge", "Generation requests the server is serving",
         active_streams_);
  metric(&out, "ktl_requests_total", "counter", "Generation requests finished",
         static_cast<double>(requests_total_));
  metric(&out, "ktl_prompt_tokens_total", "counter", "Prompt tokens of finished requests",
         static_cast<double>(prompt_tokens_));
  metric(&out, "ktl_generation_tokens_total", "counter", "Tokens generated for finished requests",
         static_cast<double>(completion_tokens_));
  header(&out, "ktl_requests_finished_total", "counter", "Generation requests by finish reason");
  for (const auto& [reason, n] : finished_by_reason_)
    out += "ktl_requests_finished_total{reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
  header(&out, "ktl_http_requests_total", "counter", "HTTP responses by status code");
  for (const auto& [status, n] : http_by_status_)
    out += "ktl_http_requests_total{status=\"" + std::to_string(status) + "\"} " +
           std::to_string(n) + "\n";
  ttft_.render("ktl_time_to_first_token_seconds", "Time to first token", &out);
  per_token_.render("ktl_time_per_output_token_seconds",
                    "Mean time between output tokens, per request", &out);
  duration_.render("ktl_request_duration_seconds", "Generation request duration", &out);
  return out;
}

std::string ServerMetrics::render_serving_json(const std::optional<EngineStats>& stats,
                                               const ModelInfo& model) const {
  const EngineStats s = stats.value_or(EngineStats{});
  nlohmann::json j = {
      {"model", model.name.empty() ? nlohmann::json(nullptr) : nlohmann::json(model.name)},
      {"model_state", model.state},
      {"max_context", model.max_context},
      {"adapters_loaded", model.adapters.size()},
      {"running", s.running},
      {"waiting", s.waiting},
      {"kv_blocks_used", s.kv_blocks_used},
      {"kv_blocks_total", s.kv_blocks_total},
      {"prefix_cache_hit_rate",
       s.prefix_cache_queries
           ? static_cast<double>(s.prefix_cache_hits) / static_cast<double>(s.prefix_cache_queries)
           : 0.0},
      {"preemptions", s.preemptions},
      {"spec_proposed", s.spec_proposed},
      {"spec_accepted", s.spec_accepted},
      {"spec_acceptance_rate",
       s.spec_proposed ? static_cast<double>(s.spec_accepted) / s.spec_proposed : 0.0},
      {"spec_mean_accepted_length",
       s.spec_verifications ? static_cast<double>(s.spec_accepted) / s.spec_verifications : 0.0},
      {"engine_tokens_generated", s.generated_tokens_total},
      {"engine_prompt_tokens", s.prompt_tokens_total}};
  std::lock_guard<std::mutex> lock(mu_);
  j["active_streams"] = active_streams_;
  j["requests_total"] = requests_total_;
  j["tokens_generated"] = completion_tokens_;
  j["prompt_tokens"] = prompt_tokens_;
  j["ttft_p50_s"] = ttft_.quantile(0.5);
  j["ttft_p99_s"] = ttft_.quantile(0.99);
  j["ttft_mean_s"] = ttft_.count() ? ttft_.sum() / static_cast<double>(ttft_.count()) : 0.0;
  j["time_per_output_token_mean_s"] =
      per_token_.count() ? per_token_.sum() / static_cast<double>(per_token_.count()) : 0.0;
  return j.dump();
}

}  // namespace ktl::server
