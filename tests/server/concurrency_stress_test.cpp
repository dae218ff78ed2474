// `ktl serve` under concurrent load, in this test's own process (the real HttpServer, engine,
// model manager and job runner; only the job children are a fake `ktl` shell script), so that a
// ThreadSanitizer build (`make tsan`) sees every server thread: 64 clients streaming
// /v1/completions and /v1/chat/completions (some hang up mid-stream, some ask for n = 2, some
// do not stream), job submissions, listings, event streams and cancels over /v1/jobs, a model
// reload while streams run, and /health, /metrics and /v1/serving polled throughout.
// Afterwards: every stream ended with [DONE] or was abandoned by its client, the server stayed
// healthy, every job reached a terminal state that its history allows, and the engine holds no
// sequence and no KV block. ~2 s in a normal build.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "server/http_server.h"
#include "server/server_context.h"
#include "tests/support/job_test_util.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl::server {
namespace {

namespace fs = std::filesystem;
using jobs::testing::eventually;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kClients = 64;     // concurrent generation clients
constexpr int kRounds = 3;       // requests per client, one after another
constexpr int kJobClients = 6;   // concurrent job-API clients
constexpr int kJobsEach = 3;     // jobs each of them submits
constexpr int kMaxStreams = 2 * kClients;  // an abandoned stream may outlive its client's turn

// The job children: sleeps --max-steps x 50 ms, exits 0 (also on SIGTERM, as the trainer does).
const char* kFakeKtl = R"(#!/bin/sh
ticks=0
for a in "$@"; do
  case "$a" in
    --max-steps=*) ticks=${a#--max-steps=} ;;
  esac
done
trap 'echo "got TERM"; exit 0' TERM
echo "fake $1 start"
i=0
while [ $i -lt $ticks ]; do sleep 0.05; i=$((i+1)); done
echo "fake $1 end"
exit 0
)";

// What one generation request saw on the client side.
struct Outcome {
  int status = 0;
  bool done = false;       // "data: [DONE]" arrived (streams)
  bool abandoned = false;  // the client hung up on purpose
  int data_events = 0;
  std::string finish;      // the last finish_reason seen
  int completion_tokens = -1;
  std::string error;       // what went wrong, "" when nothing did
};

httplib::Client client(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(30, 0);
  c.set_read_timeout(120, 0);
  c.set_write_timeout(30, 0);
  return c;
}

// One streamed request; hangs up after `abandon_after` data events when > 0.
Outcome stream_request(int port, const std::string& path, const json& body, int abandon_after) {
  Outcome o;
  std::string pending;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
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
      if (event.rfind(": ", 0) == 0) continue;  // keep-alive comment
      if (event.rfind("data: ", 0) != 0) {
        o.error = "not an SSE data line: " + event;
        return false;
      }
      const std::string payload = event.substr(6);
      if (o.done) {
        o.error = "an event after [DONE]: " + payload;
        return false;
      }
      if (payload == "[DONE]") {
        o.done = true;
        continue;
      }
      const json j = json::parse(payload, nullptr, false);
      if (!j.is_object() || j.contains("error")) {
        o.error = "bad chunk: " + payload;
        return false;
      }
      ++o.data_events;
      for (const auto& c : j.value("choices", json::array()))
        if (c.contains("finish_reason") && c["finish_reason"].is_string()) o.finish = c["finish_reason"];
      if (j.contains("usage") && j["usage"].is_object())
        o.completion_tokens = j["usage"].value("completion_tokens", -1);
      if (abandon_after > 0 && o.data_events >= abandon_after) {
        o.abandoned = true;
        return false;  // httplib closes the connection: the server must notice and cancel
      }
    }
    return true;
  };
  auto c = client(port);
  auto r = c.send(req);
  if (o.abandoned) return o;
  if (!o.error.empty()) return o;
  if (!r) {
    o.error = "no response: " + httplib::to_string(r.error());
  } else if (o.status != 200) {
    o.error = "status " + std::to_string(o.status) + ": " + pending;
  } else if (!o.done) {
    o.error = "the stream ended without [DONE] after " + std::to_string(o.data_events) + " events";
  } else if (!pending.empty()) {
    o.error = "bytes after the last event: " + pending;
  }
  return o;
}

Outcome plain_request(int port, const std::string& path, const json& body) {
  Outcome o;
  auto c = client(port);
  auto r = c.Post(path.c_str(), body.dump(), "application/json");
  if (!r) {
    o.error = "no response: " + httplib::to_string(r.error());
    return o;
  }
  o.status = r->status;
  const json j = json::parse(r->body, nullptr, false);
  if (r->status != 200 || !j.is_object() || !j.contains("choices")) {
    o.error = "status " + std::to_string(r->status) + ": " + r->body;
    return o;
  }
  o.done = true;
  o.finish = j["choices"][0].value("finish_reason", "");
  o.completion_tokens = j["usage"].value("completion_tokens", -1);
  return o;
}

json get_json(int port, const std::string& path, int* status = nullptr) {
  auto c = client(port);
  auto r = c.Get(path.c_str());
  if (status) *status = r ? r->status : 0;
  if (!r) return nullptr;
  return json::parse(r->body, nullptr, false);
}

class ServeConcurrencyStress : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);  // as `ktl serve` does: a write to a gone client is an error
    // Also as `ktl serve` does (cmd_serve.cpp): spdlog's registry is made on this thread before
    // any server thread starts. Made lazily on the model loader's thread instead, its hand-over
    // to the HTTP workers goes through a function-local static's guard inside the uninstrumented
    // libspdlog, which ThreadSanitizer cannot see (three false reports).
    spdlog::set_level(spdlog::level::info);
    const std::string data = dir_ / "data";
    fs::create_directories(data + "/shards");
    std::ofstream(data + "/training.yaml") << "max_steps: 10\n";
    std::ofstream(data + "/model.yaml") << "dim: 64\n";
    const std::string script = dir_ / "fake-ktl.sh";
    std::ofstream(script) << kFakeKtl;
    fs::permissions(script, fs::perms::owner_all);
    model_ = data + "/model";
    ktl::testing::make_tiny_checkpoint(model_, ktl::testing::make_tiny_tokenizer(dir_ / "tok"));

    ServerConfig cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.data_dir = data;
    cfg.model_dir = model_;
    cfg.configs_dir = "";
    cfg.ktl_binary = script;
    cfg.max_jobs = 2;
    cfg.max_concurrent_streams = kMaxStreams;
    cfg.max_connections = kMaxStreams + 64;
    cfg.kv_cache_mb = 4;  // ~8k tokens: the 16-sequence batch never runs short
    cfg.max_num_seqs = 16;
    cfg.num_threads = 1;  // one LibTorch thread (and a quiet ThreadSanitizer)
    cfg.drain_timeout_s = 10;
    server_ = std::make_unique<HttpServer>(cfg);
    port_ = server_->bind();
    serve_thread_ = std::thread([this] { server_->serve(); });
    ASSERT_TRUE(eventually(
        [&] {
          const json h = get_json(port_, "/health");
          return h.is_object() && h.value("status", "") == "ok";
        },
        std::chrono::seconds(120)))
        << "the server never became healthy";
  }

  void TearDown() override {
    if (server_) server_->shutdown();
    if (serve_thread_.joinable()) serve_thread_.join();
    server_.reset();
  }

  // One client's turn `round`: which kind of request it sends, and what it must see.
  void run_client(int i, int round, std::vector<std::string>* errors, std::atomic<int>* ok,
                  std::atomic<int>* abandoned) {
    const int mode = (i + round) % 5;
    const std::string prompt = i % 2 ? "나는 학교에서" : "오늘 날씨가 좋아서";
    json body = {{"max_tokens", 6 + (i * 7 + round) % 24}, {"seed", i * 10 + round},
                 {"temperature", 0.8}, {"ignore_eos", true}, {"stream", true}};
    std::string path = "/v1/completions";
    int abandon_after = 0;
    switch (mode) {
      case 0:  // chat, streamed to the end
        path = "/v1/chat/completions";
        body["messages"] = {{{"role", "user"}, {"content", "안녕하세요"}}};
        break;
      case 1:  // completion with usage: exactly max_tokens tokens
        body["prompt"] = prompt;
        body["stream_options"] = {{"include_usage", true}};
        break;
      case 2:  // a long completion the client leaves after its second event
        body["prompt"] = prompt;
        body["max_tokens"] = 100;
        abandon_after = 2;
        break;
      case 3:  // two choices of one prompt (forks sharing its KV blocks), or a chat left early
        if (round % 2 == 0) {
          body["prompt"] = prompt;
          body["n"] = 2;
        } else {
          path = "/v1/chat/completions";
          body["messages"] = {{{"role", "user"}, {"content", "이야기를 들려줘"}}};
          body["max_tokens"] = 100;
          abandon_after = 1;
        }
        break;
      default:  // not streamed
        body["prompt"] = prompt;
        body.erase("stream");
        break;
    }
    const Outcome o = body.contains("stream") ? stream_request(port_, path, body, abandon_after)
                                              : plain_request(port_, path, body);
    std::string err = o.error;
    if (err.empty() && o.abandoned) {
      ++*abandoned;
      return;
    }
    // ignore_eos: "length", except that a chat reply may also hit the chat format's stop text.
    if (err.empty() && o.finish != "length" && !(path == "/v1/chat/completions" && o.finish == "stop"))
      err = "finish_reason '" + o.finish + "' (ignore_eos: expected length)";
    if (err.empty() && mode == 1 && o.completion_tokens != body["max_tokens"].get<int>())
      err = "usage says " + std::to_string(o.completion_tokens) + " tokens, asked for " +
            body["max_tokens"].dump();
    if (err.empty()) {
      ++*ok;
      return;
    }
    std::lock_guard<std::mutex> lock(errors_mu_);
    errors->push_back("client " + std::to_string(i) + " round " + std::to_string(round) + " (" +
                      path + ", mode " + std::to_string(mode) + "): " + err);
  }

  // Submits jobs, lists them, follows one's event stream, cancels some (queued, running or
  // already over: 200 or 409).
  void run_job_client(int k, std::vector<int64_t>* ids, std::set<int64_t>* cancelled,
                      std::vector<std::string>* errors) {
    auto fail = [&](const std::string& what) {
      std::lock_guard<std::mutex> lock(errors_mu_);
      errors->push_back("job client " + std::to_string(k) + ": " + what);
    };
    auto c = client(port_);
    std::vector<int64_t> mine;
    for (int j = 0; j < kJobsEach; ++j) {
      const json spec = {{"kind", "train"},
                         {"name", "stress-" + std::to_string(k) + "-" + std::to_string(j)},
                         {"options",
                          {{"config", "training.yaml"},
                           {"model_config", "model.yaml"},
                           {"data", "shards"},
                           {"max_steps", 2 + (k + j) % 5}}}};
      auto r = c.Post("/v1/jobs", spec.dump(), "application/json");
      if (!r || r->status != 201) return fail("submit: " + (r ? r->body : "no answer"));
      mine.push_back(json::parse(r->body)["id"].get<int64_t>());
      auto list = c.Get("/v1/jobs?limit=50");
      if (!list || list->status != 200) return fail("list: " + (list ? list->body : "no answer"));
    }
    // Cancel the middle one (from queued, running or already finished).
    const int64_t victim = mine[1];
    auto cr = c.Post(("/v1/jobs/" + std::to_string(victim) + "/cancel").c_str(), "", "");
    if (!cr || (cr->status != 200 && cr->status != 409))
      return fail("cancel: " + (cr ? std::to_string(cr->status) + " " + cr->body : "no answer"));
    // Follow the first job's events to the end of the job.
    auto ev = c.Get(("/v1/jobs/" + std::to_string(mine[0]) + "/events").c_str());
    if (!ev || ev->status != 200 || ev->body.find("event: end") == std::string::npos)
      fail("events of job " + std::to_string(mine[0]) + ": " + (ev ? ev->body : "no answer"));
    std::lock_guard<std::mutex> lock(errors_mu_);
    ids->insert(ids->end(), mine.begin(), mine.end());
    if (cr->status == 200) cancelled->insert(victim);
  }

  ktl::testing::TempDir dir_{"ktl-stress"};
  std::string model_;
  std::unique_ptr<HttpServer> server_;
  std::thread serve_thread_;
  int port_ = 0;
  std::mutex errors_mu_;
};

TEST_F(ServeConcurrencyStress, SixtyFourStreamingClientsJobsAndAReload) {
  const auto t0 = Clock::now();
  std::vector<std::string> errors;
  std::atomic<int> ok{0}, abandoned{0};
  std::atomic<bool> stop_monitor{false};
  std::atomic<int> health_checks{0};

  // /health, /metrics and /v1/serving while everything runs: always answered, always healthy.
  std::thread monitor([&] {
    while (!stop_monitor) {
      int status = 0;
      const json h = get_json(port_, "/health", &status);
      const json s = get_json(port_, "/v1/serving");
      auto m = client(port_).Get("/metrics");
      if (status != 200 || !h.is_object() || h.value("status", "") != "ok" || !s.is_object() ||
          !m || m->status != 200) {
        std::lock_guard<std::mutex> lock(errors_mu_);
        errors.push_back("monitor: /health " + std::to_string(status) + " " + h.dump());
      }
      ++health_checks;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  std::vector<int64_t> job_ids;
  std::set<int64_t> cancelled_jobs;
  std::vector<std::thread> threads;
  for (int k = 0; k < kJobClients; ++k)
    threads.emplace_back([&, k] { run_job_client(k, &job_ids, &cancelled_jobs, &errors); });
  std::atomic<int> started{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < kRounds; ++round) {
        run_client(i, round, &errors, &ok, &abandoned);
        ++started;
      }
    });
  }
  // A reload of the same checkpoint while streams run: they finish on the engine they began
  // with, which shuts down once the last of them lets go.
  while (started < kClients && Clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  {
    auto r = client(port_).Post("/v1/models/load", json{{"path", model_}, {"wait", true}}.dump(),
                                "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  for (auto& t : threads) t.join();
  stop_monitor = true;
  monitor.join();
  for (const auto& e : errors) ADD_FAILURE() << e;
  EXPECT_GT(health_checks.load(), 0);
  EXPECT_EQ(ok + abandoned, kClients * kRounds);
  EXPECT_GT(abandoned.load(), 0);

  // Nothing left behind: no session, no sequence, no KV block (the prefix cache's blocks are
  // free for reuse), every request counted once.
  json serving;
  const bool drained = eventually(
      [&] {
        serving = get_json(port_, "/v1/serving");
        return serving.is_object() && serving["running"] == 0 && serving["waiting"] == 0 &&
               serving["kv_blocks_used"] == 0 && serving["active_streams"] == 0 &&
               serving["requests_total"] == kClients * kRounds;
      },
      std::chrono::seconds(60));
  EXPECT_TRUE(drained) << serving.dump();
  EXPECT_EQ(server_->context().generations.load(), 0);
  auto engine = server_->context().models.engine();
  ASSERT_TRUE(engine);
  const EngineStats st = engine->stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);

  // Every job ends, each in a state its history allows: cancelled ones cancelled (or done before
  // the cancel arrived: then the cancel was a 409 and they are not in the set), others succeeded.
  ASSERT_EQ(job_ids.size(), static_cast<size_t>(kJobClients * kJobsEach));
  std::map<int64_t, std::string> final_status;
  EXPECT_TRUE(eventually(
      [&] {
        for (int64_t id : job_ids) {
          const json j = get_json(port_, "/v1/jobs/" + std::to_string(id));
          final_status[id] = j.is_object() ? j.value("status", "?") : "?";
          if (final_status[id] == "queued" || final_status[id] == "running") return false;
        }
        return true;
      },
      std::chrono::seconds(60)));
  for (int64_t id : job_ids) {
    const std::string want = cancelled_jobs.count(id) ? "cancelled" : "succeeded";
    EXPECT_EQ(final_status[id], want) << "job " << id;
  }
  const json running = get_json(port_, "/v1/jobs?status=running");
  EXPECT_TRUE(running.is_object() && running["data"].empty()) << running.dump();

  const json h = get_json(port_, "/health");
  EXPECT_EQ(h.value("status", ""), "ok") << h.dump();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("%d requests: %d complete, %d abandoned by their client; %zu jobs; %.1f s\n",
              kClients * kRounds, ok.load(), abandoned.load(), job_ids.size(), secs);

  server_->shutdown();
  EXPECT_EQ(server_->phase(), ServerPhase::kStopped);
}

}  // namespace
}  // namespace ktl::server
