// LoRA adapters over HTTP, against the real server in-process with a tiny checkpoint:
// POST/GET/DELETE /v1/adapters, errors (path outside the roots, missing directory, bad files,
// duplicate name, unknown adapter), /v1/models listing adapters with their parent, requests
// routed by "model" (unknown names 404), metrics; and hot load/unload under 16 concurrent
// streams over the base and three adapters: no stream is lost, an adapter unloaded mid-stream
// finishes its streams and is then gone, and every KV block returns to the pool.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/adapters/lora_adapter.h"
#include "server/http_server.h"
#include "tests/support/job_test_util.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl::server {
namespace {

namespace fs = std::filesystem;
using jobs::testing::eventually;
using nlohmann::json;

httplib::Client client(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(30, 0);
  c.set_read_timeout(120, 0);
  return c;
}

struct Reply {
  int status = 0;
  json body;
};

Reply call(int port, const std::string& method, const std::string& path, const json& body = {}) {
  auto c = client(port);
  httplib::Result r = method == "GET"      ? c.Get(path.c_str())
                      : method == "DELETE" ? c.Delete(path.c_str())
                                           : c.Post(path.c_str(), body.dump(), "application/json");
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.body = json::parse(r->body, nullptr, false);
  return out;
}

// What one streamed completion saw.
struct StreamOutcome {
  int status = 0;
  bool done = false;
  std::string finish;
  int completion_tokens = -1;
  std::string model;
  std::string error;
};

StreamOutcome stream_completion(int port, const json& body) {
  StreamOutcome o;
  std::string pending;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.response_handler = [&](const httplib::Response& r) {
    o.status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    pending.append(data, n);
    for (size_t end; (end = pending.find("\n\n")) != std::string::npos;) {
      const std::string event = pending.substr(0, end);
      pending.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        o.done = true;
        continue;
      }
      const json j = json::parse(payload, nullptr, false);
      if (!j.is_object() || j.contains("error")) {
        o.error = "bad chunk: " + payload;
        return false;
      }
      o.model = j.value("model", "");
      for (const auto& c : j.value("choices", json::array()))
        if (c.contains("finish_reason") && c["finish_reason"].is_string())
          o.finish = c["finish_reason"];
      if (j.contains("usage") && j["usage"].is_object())
        o.completion_tokens = j["usage"].value("completion_tokens", -1);
    }
    return true;
  };
  auto c = client(port);
  auto r = c.send(req);
  if (!r && o.error.empty()) o.error = "no response: " + httplib::to_string(r.error());
  if (o.status != 200 && o.error.empty()) o.error = "status " + std::to_string(o.status) + pending;
  return o;
}

json completion_body(const std::string& model, int max_tokens, bool stream) {
  json b = {{"prompt", "오늘 날씨가"}, {"max_tokens", max_tokens}, {"temperature", 0},
            {"ignore_eos", true},      {"stream", stream}};
  if (!model.empty()) b["model"] = model;
  if (stream) b["stream_options"] = {{"include_usage", true}};
  return b;
}

// A random adapter (non-zero B) for the tiny checkpoint's shape, written as PEFT files.
void write_adapter(const std::string& dir, const ModelConfig& mc, uint64_t seed,
                   const std::string& targets) {
  Transformer m(mc);
  LoraConfig c;
  c.rank = 4;
  c.alpha = 8;
  c.targets = parse_lora_targets(targets);
  attach_lora(*m, c, seed);
  torch::NoGradGuard ng;
  torch::manual_seed(seed);
  for (auto& [key, p] : lora_named_parameters(*m))
    if (key.find("lora_B") != std::string::npos) p.copy_(torch::randn(p.sizes()) * 0.5);
  save_peft_adapter(dir, extract_lora(*m));
}

class AdapterRoutes : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    spdlog::set_level(spdlog::level::warn);
    data_ = dir_ / "data";
    fs::create_directories(data_);
    const std::string tok = ktl::testing::make_tiny_tokenizer(dir_ / "tok");
    const std::string model = data_ + "/model";
    // The tiny shape with a longer context: streams long enough to unload an adapter mid-stream.
    auto tokenizer = Tokenizer::load(tok);
    ModelConfig mc = ktl::testing::tiny_model_config(tokenizer->vocab_size());
    mc.max_seq_length = 512;
    {
      Transformer m(mc);
      m->init_weights(1);
      save_checkpoint(model, *m, tokenizer->model_bytes(), CheckpointMeta{});
    }
    for (int k = 1; k <= 4; ++k)
      write_adapter(data_ + "/adapters/a" + std::to_string(k), mc, 10 + k,
                    k == 2 ? "q,v" : "all");
    fs::create_directories(data_ + "/adapters/broken");
    std::ofstream(data_ + "/adapters/broken/adapter_config.json") << "{\"peft_type\": \"LORA\"";

    ServerConfig cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.data_dir = data_;
    cfg.model_dir = model;
    cfg.configs_dir = "";
    cfg.adapters = {{"a1", data_ + "/adapters/a1"}};  // as --adapter a1=DIR
    cfg.kv_cache_mb = 8;
    cfg.max_num_seqs = 8;  // 16 streams run in two waves: the adapters stay in use longer
    cfg.num_threads = 2;
    cfg.drain_timeout_s = 10;
    server_ = std::make_unique<HttpServer>(cfg);
    port_ = server_->bind();
    serve_thread_ = std::thread([this] { server_->serve(); });
    ASSERT_TRUE(eventually(
        [&] { return call(port_, "GET", "/health").body.value("status", "") == "ok"; },
        std::chrono::seconds(120)))
        << "the server never became healthy";
  }
  void TearDown() override {
    if (server_) server_->shutdown();
    if (serve_thread_.joinable()) serve_thread_.join();
  }
  json load(const std::string& name, const std::string& path, int* status) {
    Reply r = call(port_, "POST", "/v1/adapters", {{"name", name}, {"path", path}});
    *status = r.status;
    return r.body;
  }
  std::string adapter_dir(int k) const { return data_ + "/adapters/a" + std::to_string(k); }

  ktl::testing::TempDir dir_{"ktl-adapter-routes"};
  std::string data_;
  std::unique_ptr<HttpServer> server_;
  std::thread serve_thread_;
  int port_ = 0;
};

TEST_F(AdapterRoutes, LoadListUseUnloadAndErrors) {
  int status = 0;
  // a1 came with the server (--adapter); a2 by path relative to the data dir.
  json a2 = load("a2", "adapters/a2", &status);
  ASSERT_EQ(status, 200) << a2.dump();
  EXPECT_EQ(a2["rank"], 4);
  EXPECT_EQ(a2["targets"], json({"q", "v"}));
  EXPECT_EQ(a2["state"], "ready");
  EXPECT_GE(a2["load_ms"].get<double>(), 0.0);

  Reply list = call(port_, "GET", "/v1/adapters");
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body["data"].size(), 2u);
  EXPECT_EQ(list.body["data"][0]["name"], "a1");
  EXPECT_EQ(list.body["data"][0]["targets"].size(), 7u);

  Reply models = call(port_, "GET", "/v1/models");
  ASSERT_EQ(models.body["data"].size(), 3u);
  const std::string base = models.body["data"][0]["id"];
  EXPECT_FALSE(models.body["data"][0].contains("parent"));
  EXPECT_EQ(models.body["data"][1]["id"], "a1");
  EXPECT_EQ(models.body["data"][1]["parent"], base);

  // Requests by "model": the base, each adapter (different greedy text), unknown -> 404.
  auto text = [&](const std::string& model) {
    Reply r = call(port_, "POST", "/v1/completions", completion_body(model, 12, false));
    EXPECT_EQ(r.status, 200) << model << ": " << r.body.dump();
    EXPECT_EQ(r.body.value("model", ""), model.empty() ? base : model);
    return r.body["choices"][0].value("text", "");
  };
  const std::string t_base = text(""), t1 = text("a1"), t2 = text("a2");
  EXPECT_EQ(text(base), t_base);
  EXPECT_NE(t1, t_base);
  EXPECT_NE(t2, t_base);
  EXPECT_EQ(text("a1"), t1);  // greedy: the same again
  Reply unknown = call(port_, "POST", "/v1/completions", completion_body("nope", 4, false));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body["error"]["code"], "model_not_found");
  EXPECT_NE(unknown.body["error"]["message"].get<std::string>().find("a1, a2"), std::string::npos)
      << unknown.body.dump();
  Reply chat = call(port_, "POST", "/v1/chat/completions",
                    {{"model", "a2"},
                     {"messages", {{{"role", "user"}, {"content", "안녕"}}}},
                     {"max_tokens", 4}});
  EXPECT_EQ(chat.status, 200) << chat.body.dump();
  EXPECT_EQ(chat.body.value("model", ""), "a2");

  // Errors.
  load("x", "/etc", &status);
  EXPECT_EQ(status, 400);  // outside --data-dir / --allow-path
  load("x", "adapters/none", &status);
  EXPECT_EQ(status, 404);
  json broken = load("x", "adapters/broken", &status);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(broken["error"]["code"], "adapter_invalid") << broken.dump();
  json dup = load("a1", adapter_dir(3), &status);
  EXPECT_EQ(status, 409) << dup.dump();
  load(base, adapter_dir(3), &status);
  EXPECT_EQ(status, 409);
  load("bad name", adapter_dir(3), &status);
  EXPECT_EQ(status, 400);
  Reply no_name = call(port_, "POST", "/v1/adapters", {{"path", adapter_dir(3)}});
  EXPECT_EQ(no_name.status, 400);
  EXPECT_EQ(call(port_, "DELETE", "/v1/adapters/nope").status, 404);

  // Prometheus: adapters loaded and requests per adapter.
  auto c = client(port_);
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("ktl_adapters_loaded 2"), std::string::npos);
  EXPECT_NE(metrics->body.find("ktl_adapter_requests_total{adapter=\"a1\"} 2"), std::string::npos)
      << metrics->body;

  // Unload (idle: gone at once); the name is free again and requests naming it 404.
  Reply del = call(port_, "DELETE", "/v1/adapters/a2");
  EXPECT_EQ(del.status, 200);
  EXPECT_EQ(del.body["state"], "unloaded");
  EXPECT_EQ(call(port_, "POST", "/v1/completions", completion_body("a2", 4, false)).status, 404);
  EXPECT_EQ(call(port_, "GET", "/v1/models").body["data"].size(), 2u);
  load("a2", adapter_dir(2), &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(text("a2"), t2);  // reloaded: the same adapter, the same text
}

TEST_F(AdapterRoutes, HotLoadAndUnloadUnderSixteenStreamsLosesNone) {
  int status = 0;
  load("a2", adapter_dir(2), &status);
  ASSERT_EQ(status, 200);
  load("a3", adapter_dir(3), &status);
  ASSERT_EQ(status, 200);
  const int kStreams = 16, kTokens = 300;
  const std::vector<std::string> models = {"", "a1", "a2", "a3"};
  std::vector<StreamOutcome> out(kStreams);
  std::vector<std::thread> ts;
  for (int i = 0; i < kStreams; ++i)
    ts.emplace_back([&, i] {
      out[i] = stream_completion(port_, completion_body(models[i % 4], kTokens, true));
    });
  // While they stream: wait until every a1 stream has been submitted (one still running), then
  // unload a1 (draining), load a4, unload a3. A stream submitted after the unload would get 404:
  // on a loaded machine a thread can start late, so "one a1 stream in flight" is not enough.
  ASSERT_TRUE(eventually(
      [&] {
        const json list = call(port_, "GET", "/v1/adapters").body;  // not a temporary's member
        for (const auto& a : list["data"])
          if (a["name"] == "a1" && a["requests_total"].get<int>() >= kStreams / 4 &&
              a["in_flight"].get<int>() > 0)
            return true;
        return false;
      },
      std::chrono::seconds(60)))
      << call(port_, "GET", "/v1/adapters").body.dump() << " "
      << call(port_, "GET", "/v1/serving").body.dump();
  Reply del = call(port_, "DELETE", "/v1/adapters/a1");
  EXPECT_EQ(del.status, 202) << del.body.dump();
  EXPECT_EQ(del.body["state"], "draining");
  json a4 = load("a4", adapter_dir(4), &status);
  EXPECT_EQ(status, 200) << a4.dump();
  load("a1", adapter_dir(1), &status);
  EXPECT_EQ(status, 409);  // still draining: the name is held
  EXPECT_EQ(call(port_, "POST", "/v1/completions", completion_body("a1", 4, false)).status, 404);
  const int a3_status = call(port_, "DELETE", "/v1/adapters/a3").status;
  EXPECT_TRUE(a3_status == 200 || a3_status == 202) << a3_status;
  Reply a4_run = call(port_, "POST", "/v1/completions", completion_body("a4", 5, false));
  EXPECT_EQ(a4_run.status, 200) << a4_run.body.dump();
  for (auto& t : ts) t.join();

  for (int i = 0; i < kStreams; ++i) {
    const StreamOutcome& o = out[i];
    EXPECT_EQ(o.error, "") << "stream " << i;
    EXPECT_TRUE(o.done) << "stream " << i;
    EXPECT_EQ(o.finish, "length") << "stream " << i;
    EXPECT_EQ(o.completion_tokens, kTokens) << "stream " << i;
    if (!models[i % 4].empty()) {
      EXPECT_EQ(o.model, models[i % 4]) << "stream " << i;
    }
  }
  // The drained adapters are gone; a2 and a4 remain; every KV block is back in the pool.
  ASSERT_TRUE(eventually(
      [&] {
        std::vector<std::string> names;
        const json list = call(port_, "GET", "/v1/adapters").body;
        for (const auto& a : list["data"]) names.push_back(a["name"]);
        return names == std::vector<std::string>{"a2", "a4"};
      },
      std::chrono::seconds(10)))
      << call(port_, "GET", "/v1/adapters").body.dump();
  EXPECT_TRUE(eventually(
      [&] { return call(port_, "GET", "/v1/serving").body.value("kv_blocks_used", -1) == 0; },
      std::chrono::seconds(10)));
  load("a1", adapter_dir(1), &status);
  EXPECT_EQ(status, 200);  // the name is free once drained
}

}  // namespace
}  // namespace ktl::server
