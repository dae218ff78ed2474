// Prometheus text and the /v1/serving twin.
#include "server/server_metrics.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace ktl::server {
namespace {

TEST(Histogram, CumulativeBuckets) {
  Histogram h({0.1, 1.0});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5.0);
  std::string out;
  h.render("x_seconds", "help", &out);
  EXPECT_NE(out.find("x_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"1\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(out.find("x_seconds_sum 5.55\n"), std::string::npos) << out;
  EXPECT_DOUBLE_EQ(h.quantile(0.5), 1.0);
}

TEST(ServerMetrics, RendersEngineAndServerNumbers) {
  ServerMetrics m;
  m.record_http_status(200);
  m.record_http_status(429);
  m.record_http_status(429);
  m.record_request({"stop", 10, 5, 0.02, 0.1});
  m.record_request({"cancelled", 4, 1, 0.01, 0.05});
  m.stream_opened();
  EngineStats s;
  s.running = 3;
  s.waiting = 2;
  s.kv_blocks_total = 100;
  s.kv_blocks_used = 40;
  s.prefix_cache_queries = 10;
  s.prefix_cache_hits = 5;
  s.spec_proposed = 40;
  s.spec_accepted = 30;
  s.spec_verifications = 10;
  ModelInfo info{"tiny", "ready", 256};
  std::string text = m.render_prometheus(s, info);
  for (const char* want :
       {"ktl_requests_running 3\n", "ktl_requests_waiting 2\n", "ktl_kv_blocks_used 40\n",
        "ktl_kv_blocks_free 60\n", "ktl_prefix_cache_hit_rate 0.5\n", "ktl_model_loaded 1\n",
        "ktl_http_streams_active 1\n", "ktl_requests_finished_total{reason=\"cancelled\"} 1\n",
        "ktl_http_requests_total{status=\"429\"} 2\n", "ktl_prompt_tokens_total 14\n",
        "ktl_generation_tokens_total 6\n", "ktl_time_to_first_token_seconds_count 2\n",
        "ktl_time_per_output_token_seconds_count 1\n", "# TYPE ktl_requests_running gauge\n",
        "ktl_spec_draft_tokens_total 40\n", "ktl_spec_accepted_tokens_total 30\n",
        "ktl_spec_acceptance_rate 0.75\n", "ktl_spec_mean_accepted_length 3\n"})
    EXPECT_NE(text.find(want), std::string::npos) << want;
  auto j = nlohmann::json::parse(m.render_serving_json(s, info));
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["running"], 3);
  EXPECT_EQ(j["kv_blocks_total"], 100);
  EXPECT_DOUBLE_EQ(j["prefix_cache_hit_rate"].get<double>(), 0.5);
  EXPECT_EQ(j["tokens_generated"], 6);
  EXPECT_DOUBLE_EQ(j["spec_acceptance_rate"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(j["spec_mean_accepted_length"].get<double>(), 3.0);
  m.stream_closed();
  EXPECT_EQ(m.active_streams(), 0);
  auto none = nlohmann::json::parse(m.render_serving_json(std::nullopt, {"", "none", 0}));
  EXPECT_TRUE(none["model"].is_null());
  EXPECT_EQ(none["kv_blocks_total"], 0);
}

}  // namespace
}  // namespace ktl::server
