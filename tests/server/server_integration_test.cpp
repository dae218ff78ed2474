// `ktl serve` end to end: the real binary on 127.0.0.1 (free port) with a tiny random model the
// test builds with the CLI. Streaming, chat, concurrency, cancellation on disconnect, bad input,
// auth, static files, model loading, graceful stop.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/server_test_util.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using ktl::testing::ServerProcess;

constexpr const char* kKey = "test-key-123";

struct SseResult {
  std::vector<json> chunks;
  bool done = false;
  std::string text;  // concatenated choice text / delta content
  std::string finish;
};

SseResult parse_sse(const std::string& body) {
  SseResult r;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    std::string payload = line.substr(6);
    if (payload == "[DONE]") {
      r.done = true;
      continue;
    }
    json j = json::parse(payload);
    for (const auto& c : j["choices"]) {
      if (c.contains("text")) r.text += c["text"].get<std::string>();
      if (c.contains("delta") && c["delta"].contains("content"))
        r.text += c["delta"]["content"].get<std::string>();
      if (!c["finish_reason"].is_null()) r.finish = c["finish_reason"];
    }
    r.chunks.push_back(std::move(j));
  }
  return r;
}

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new std::string(fs::temp_directory_path() / ("ktl_serve_test_" + std::to_string(getpid())));
    fs::remove_all(*dir_);
    std::string why;
    model_ = new std::string(ktl::testing::make_tiny_served_model(*dir_ + "/m", &why));
    if (model_->empty()) {
      // No ktl binary = nothing to test (skip); a ktl that cannot build the model is a failure.
      if (fs::exists(ktl::testing::ktl_bin()))
        failure_ = new std::string(why);
      else
        skip_ = new std::string(why);
      return;
    }
    fs::create_directories(*dir_ + "/web/node_modules/uplot/dist");
    std::ofstream(*dir_ + "/web/index.html") << "<!doctype html><title>ktl</title>";
    std::ofstream(*dir_ + "/web/node_modules/uplot/dist/uPlot.min.css") << ".u{}";
    std::ofstream(*dir_ + "/secret.txt") << "outside";
    server_ = new ServerProcess({"--model", *model_, "--data-dir", *dir_ + "/data", "--web-root",
                                 *dir_ + "/web", "--api-key", kKey, "--kv-cache-mb", "64",
                                 "--max-streams", "32", "--allow-path", *dir_ + "/m"},
                                *dir_ + "/server.log");
    ASSERT_GT(server_->port(), 0) << server_->log();
    if (!server_->wait_healthy()) FAIL() << "server never became healthy\n" << server_->log();
  }

  static void TearDownTestSuite() {
    if (server_) {
      const int code = server_->stop();
      EXPECT_EQ(code, 0) << "ktl serve did not exit 0 on SIGTERM\n" << server_->log();
    }
    delete server_;
    server_ = nullptr;
    if (dir_) fs::remove_all(*dir_);
  }

  void SetUp() override {
    if (skip_) GTEST_SKIP() << *skip_;
    if (failure_) FAIL() << *failure_;
    ASSERT_TRUE(server_ && server_->alive()) << (server_ ? server_->log() : "");
  }

  static httplib::Client client(bool with_key = true) {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(120, 0);
    c.set_write_timeout(60, 0);
    if (with_key) c.set_default_headers({{"Authorization", std::string("Bearer ") + kKey}});
    return c;
  }

  static httplib::Result post(const std::string& path, const std::string& body) {
    return client().Post(path.c_str(), body, "application/json");
  }

  static std::string metric_line(const std::string& name) {
    auto r = client().Get("/metrics");
    if (!r) return "";
    std::istringstream in(r->body);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(name + " ", 0) == 0) return line.substr(name.size() + 1);
    return "";
  }

  static void expect_json_error(const httplib::Result& r, int status, const std::string& what) {
    ASSERT_TRUE(r) << what << ": no response (" << httplib::to_string(r.error()) << ")";
    EXPECT_EQ(r->status, status) << what << ": " << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << what << ": " << r->body;
    EXPECT_TRUE(j["error"]["message"].is_string()) << what;
    EXPECT_TRUE(j["error"]["type"].is_string()) << what;
    EXPECT_TRUE(j["error"]["code"].is_string()) << what;
  }

  static std::string* dir_;
  static std::string* model_;
  static std::string* skip_;
  static std::string* failure_;
  static ServerProcess* server_;
};

std::string* ServeTest::dir_ = nullptr;
std::string* ServeTest::model_ = nullptr;
std::string* ServeTest::skip_ = nullptr;
std::string* ServeTest::failure_ = nullptr;
ServerProcess* ServeTest::server_ = nullptr;

TEST_F(ServeTest, StreamConcatenatesToTheNonStreamedText) {
  json req = {{"prompt", "나는 학교에서"}, {"max_tokens", 40}, {"seed", 11},
              {"temperature", 0.9},        {"top_k", 50},      {"ignore_eos", true}};
  auto whole = post("/v1/completions", req.dump());
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200) << whole->body;
  json w = json::parse(whole->body);
  const std::string text = w["choices"][0]["text"];
  EXPECT_EQ(w["usage"]["completion_tokens"], 40);
  EXPECT_EQ(w["choices"][0]["finish_reason"], "length");

  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  auto streamed = post("/v1/completions", req.dump());
  ASSERT_TRUE(streamed);
  ASSERT_EQ(streamed->status, 200);
  EXPECT_NE(streamed->get_header_value("Content-Type").find("text/event-stream"),
            std::string::npos);
  SseResult s = parse_sse(streamed->body);
  EXPECT_TRUE(s.done);
  EXPECT_GE(s.chunks.size(), 5u) << streamed->body;  // several events, not one blob
  EXPECT_EQ(s.text, text);
  EXPECT_EQ(s.finish, "length");
  ASSERT_FALSE(s.chunks.empty());
  EXPECT_EQ(s.chunks.back()["usage"]["completion_tokens"], 40);
}

TEST_F(ServeTest, ChatStreamsAndAnswers) {
  json req = {{"messages", {{{"role", "user"}, {"content", "안녕하세요"}}}},
              {"max_tokens", 12},
              {"seed", 3}};
  auto r = post("/v1/chat/completions", req.dump());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 3);
  req["stream"] = true;
  auto s = post("/v1/chat/completions", req.dump());
  ASSERT_TRUE(s);
  SseResult sr = parse_sse(s->body);
  EXPECT_TRUE(sr.done);
  ASSERT_FALSE(sr.chunks.empty());
  EXPECT_EQ(sr.chunks[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(sr.text, j["choices"][0]["message"]["content"].get<std::string>());
}

TEST_F(ServeTest, SixteenConcurrentStreamsComplete) {
  constexpr int kStreams = 16;
  std::vector<std::thread> threads;
  std::vector<int> tokens(kStreams, -1);
  std::vector<std::string> errors(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      json req = {{"prompt", "우리는 공원에서"},
                  {"max_tokens", 24 + i},
                  {"seed", i},
                  {"ignore_eos", true},
                  {"stream", true},
                  {"stream_options", {{"include_usage", true}}}};
      auto r = post("/v1/completions", req.dump());
      if (!r || r->status != 200) {
        errors[i] = r ? r->body : httplib::to_string(r.error());
        return;
      }
      SseResult s = parse_sse(r->body);
      if (!s.done) errors[i] = "no [DONE]";
      tokens[i] = s.chunks.empty() ? -1 : s.chunks.back()["usage"]["completion_tokens"].get<int>();
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    EXPECT_EQ(errors[i], "") << "stream " << i;
    EXPECT_EQ(tokens[i], 24 + i) << "stream " << i;
  }
}

// Opens a raw streaming request, reads until the first event, then drops the connection.
bool open_and_abandon_stream(int port, const std::string& body) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
  std::string req = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                    std::string(kKey) + "\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    return false;
  std::string got;
  char buf[4096];
  while (got.find("data: ") == std::string::npos) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got.find("data: ") != std::string::npos;
}

TEST_F(ServeTest, DisconnectedClientsAreCancelledAndFreeCapacity) {
  auto cancelled = [] {
    auto r = client().Get("/metrics");
    const std::string key = "ktl_requests_finished_total{reason=\"cancelled\"} ";
    auto pos = r ? r->body.find(key) : std::string::npos;
    return pos == std::string::npos ? 0 : std::stoi(r->body.substr(pos + key.size()));
  };
  const int before = cancelled();
  // Each would run ~1000 tokens; the clients leave after the first event.
  json req = {{"prompt", "고양이가"}, {"max_tokens", 1000}, {"ignore_eos", true}, {"stream", true}};
  constexpr int kClients = 4;
  for (int i = 0; i < kClients; ++i)
    ASSERT_TRUE(open_and_abandon_stream(server_->port(), req.dump()));
  std::string running, active;
  for (int i = 0; i < 100; ++i) {
    running = metric_line("ktl_requests_running");
    active = metric_line("ktl_http_streams_active");
    if (running == "0" && active == "0" && cancelled() >= before + kClients) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(running, "0");
  EXPECT_EQ(active, "0");
  EXPECT_GE(cancelled(), before + kClients) << "disconnects were not cancelled in the engine";
  auto serving = json::parse(client().Get("/v1/serving")->body);
  EXPECT_EQ(serving["running"], 0);
  EXPECT_EQ(serving["waiting"], 0);
}

TEST_F(ServeTest, BadInputGetsJsonErrors) {
  expect_json_error(post("/v1/completions", "{not json"), 400, "invalid JSON");
  expect_json_error(post("/v1/completions", R"({"prompt": 12})"), 400, "prompt type");
  expect_json_error(post("/v1/completions", R"({"prompt":"a","max_tokens":"5"})"), 400,
                    "max_tokens type");
  expect_json_error(post("/v1/completions", R"({"prompt":"a","temperature":[1]})"), 400,
                    "temperature type");
  expect_json_error(post("/v1/completions", R"({"prompt":"a","max_tokens":-3})"), 400,
                    "negative max_tokens");
  expect_json_error(post("/v1/completions", R"({"prompt":"a","max_tokens":1000000000})"), 400,
                    "huge max_tokens");
  expect_json_error(post("/v1/completions", R"({"prompt":"a","model":"gpt-9"})"), 404,
                    "unknown model");
  expect_json_error(post("/v1/completions", R"({"prompt":""})"), 400, "empty prompt");
  expect_json_error(post("/v1/chat/completions", R"({"messages":[]})"), 400, "empty messages");
  expect_json_error(post("/v1/completions", std::string(R"({"prompt":"a)") + "\xc3\x28" + "\"}"),
                    400, "invalid UTF-8");
  std::string long_prompt;
  for (int i = 0; i < 600; ++i) long_prompt += "학생들이 도서관에서 ";
  expect_json_error(post("/v1/completions", json{{"prompt", long_prompt}}.dump()), 400,
                    "prompt longer than the context");
  expect_json_error(post("/v1/completions", json{{"prompt", std::string(10 << 20, 'a')}}.dump()),
                    413, "10 MB body");
  expect_json_error(post("/v1/tokenize", R"({"text": false})"), 400, "tokenize type");
  expect_json_error(post("/v1/detokenize", R"({"tokens": [999999]})"), 400, "detokenize range");
  expect_json_error(client().Get("/v1/nope"), 404, "unknown route");
  auto h = client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST_F(ServeTest, ApiKeyRequiredOnV1) {
  auto none = client(false).Post("/v1/completions", R"({"prompt":"a"})", "application/json");
  expect_json_error(none, 401, "missing key");
  httplib::Client wrong("127.0.0.1", server_->port());
  wrong.set_default_headers({{"Authorization", "Bearer not-the-key"}});
  expect_json_error(wrong.Get("/v1/models"), 401, "wrong key");
  expect_json_error(wrong.Get("/v1/jobs"), 401, "wrong key on jobs");
  // /health and the dashboard stay open.
  auto h = client(false).Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto idx = client(false).Get("/");
  ASSERT_TRUE(idx);
  EXPECT_EQ(idx->status, 200);
  EXPECT_NE(idx->body.find("<title>ktl</title>"), std::string::npos);
}

TEST_F(ServeTest, StaticFilesNeverEscapeTheWebRoot) {
  auto c = client(false);
  auto css = c.Get("/node_modules/uplot/dist/uPlot.min.css");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->status, 200);
  EXPECT_NE(css->get_header_value("Content-Type").find("text/css"), std::string::npos);
  for (const char* p : {"/../secret.txt", "/%2e%2e/secret.txt", "/node_modules/../../secret.txt",
                        "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "//etc/passwd"}) {
    auto r = c.Get(p);
    ASSERT_TRUE(r) << p;
    EXPECT_EQ(r->status, 404) << p;
    EXPECT_EQ(r->body.find("outside"), std::string::npos) << p;
  }
}

TEST_F(ServeTest, ModelsTokenizeAndServingState) {
  auto models = json::parse(client().Get("/v1/models")->body);
  ASSERT_EQ(models["data"].size(), 1u);
  const std::string name = models["data"][0]["id"];
  auto ok =
      post("/v1/completions", json{{"prompt", "안녕"}, {"model", name}, {"max_tokens", 2}}.dump());
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  auto tok = json::parse(post("/v1/tokenize", R"({"prompt":"나는 학교에서 책을 읽었다."})")->body);
  ASSERT_GT(tok["count"].get<int>(), 2);
  EXPECT_EQ(tok["tokens"][0], 2);  // BOS
  std::vector<int> ids(tok["tokens"].begin() + 1, tok["tokens"].end());
  auto detok = json::parse(post("/v1/detokenize", json{{"tokens", ids}}.dump())->body);
  EXPECT_EQ(detok["text"], "나는 학교에서 책을 읽었다.");
  auto n2 = post("/v1/completions", R"({"prompt":"나는","n":2,"max_tokens":4,"seed":5})");
  ASSERT_TRUE(n2);
  ASSERT_EQ(n2->status, 200) << n2->body;
  EXPECT_EQ(json::parse(n2->body)["choices"].size(), 2u);
  auto metrics = client().Get("/metrics");
  ASSERT_TRUE(metrics);
  for (const char* m :
       {"ktl_requests_running", "ktl_requests_waiting", "ktl_kv_blocks_used", "ktl_kv_blocks_free",
        "ktl_prefix_cache_hit_rate", "ktl_time_to_first_token_seconds_bucket",
        "ktl_time_per_output_token_seconds_bucket", "ktl_generation_tokens_total",
        "ktl_prompt_tokens_total"})
    EXPECT_NE(metrics->body.find(m), std::string::npos) << m;
  auto serving = json::parse(client().Get("/v1/serving")->body);
  EXPECT_EQ(serving["model"], name);
  EXPECT_GT(serving["kv_blocks_total"].get<int>(), 0);
}

TEST_F(ServeTest, LoadsModelsOnlyFromAllowedRoots) {
  expect_json_error(post("/v1/models/load", R"({"path":"/etc"})"), 400, "outside the roots");
  expect_json_error(post("/v1/models/load", R"({"path":"no/such/dir"})"), 404, "missing dir");
  expect_json_error(post("/v1/models/load", R"({"job_id":424242})"), 404, "unknown job");
  auto r = post("/v1/models/load", json{{"path", *model_}, {"wait", true}}.dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  auto after = post("/v1/completions", R"({"prompt":"나는","max_tokens":3})");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << after->body;
}

}  // namespace

namespace {

// Limits with a second server: --max-streams 2, a 64 KiB body limit, no key. And the refusal to
// listen on a non-loopback address without a key.
// A fresh tiny model in its own temp dir, for tests that start their own server.
class ServeOwnServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("ktl_serve_" +
             std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
             std::to_string(getpid())))
               .string();
    fs::remove_all(dir_);
    std::string why;
    model_ = ktl::testing::make_tiny_served_model(dir_ + "/m", &why);
    if (model_.empty()) {
      if (!fs::exists(ktl::testing::ktl_bin())) GTEST_SKIP() << why;
      FAIL() << why;
    }
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_, model_;
};

TEST_F(ServeOwnServerTest, BackpressureAndBindSafety) {
  const std::string& dir = dir_;
  const std::string& model = model_;

  // Non-loopback without a key: refused at start with a clear message, exit 1.
  const std::string refused_log = dir + "/refused.log";
  int rc = std::system((ktl::testing::ktl_bin() + " serve --host 0.0.0.0 --port 0 --data-dir " +
                        dir + "/d0 > " + refused_log + " 2>&1")
                           .c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 1);
  EXPECT_NE(ktl::testing::slurp(refused_log).find("--insecure"), std::string::npos)
      << ktl::testing::slurp(refused_log);

  ServerProcess server({"--model", model, "--data-dir", dir + "/data", "--max-streams", "2",
                        "--max-body-mb", "0.0625", "--kv-cache-mb", "32"},
                       dir + "/server.log");
  ASSERT_GT(server.port(), 0) << server.log();
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(60, 0);
  bool healthy = false;
  for (int i = 0; i < 600 && !healthy; ++i) {
    auto h = c.Get("/health");
    healthy = h && h->status == 200 && h->body.find("\"ok\"") != std::string::npos;
    if (!healthy) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(healthy) << server.log();

  // Two long streams hold both slots; the third request is refused with 429, not queued forever.
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  std::vector<std::thread> holders;
  for (int i = 0; i < 2; ++i) {
    holders.emplace_back([&] {
      httplib::Client h("127.0.0.1", server.port());
      h.set_read_timeout(60, 0);
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body = R"({"prompt":"나는","max_tokens":1000,"ignore_eos":true,"stream":true})";
      req.set_header("Content-Type", "application/json");
      bool counted = false;
      req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
        if (!counted) {
          counted = true;
          ++started;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a slow reader
        return !stop.load();                                         // false = hang up
      };
      h.send(req);
    });
  }
  for (int i = 0; i < 300 && started < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(started.load(), 2);
  auto busy = c.Post("/v1/completions", R"({"prompt":"나는","max_tokens":2})", "application/json");
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->status, 429) << busy->body;
  EXPECT_NE(busy->body.find("\"too_many_requests\""), std::string::npos) << busy->body;
  stop = true;
  for (auto& t : holders) t.join();
  // The slots come back once the clients have gone.
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    auto r = c.Post("/v1/completions", R"({"prompt":"나는","max_tokens":2})", "application/json");
    status = r ? r->status : 0;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status, 200);

  // The body limit is configurable: 100 KiB > 64 KiB -> 413 with a JSON error.
  auto big = c.Post("/v1/completions", json{{"prompt", std::string(100 << 10, 'a')}}.dump(),
                    "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_NE(big->body.find("payload_too_large"), std::string::npos);
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace

TEST_F(ServeOwnServerTest, CorruptModelLeavesTheServerUpButUnhealthy) {
  const std::string& dir = dir_;
  const std::string& model = model_;
  const auto weights = model + "/model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);  // a truncated checkpoint

  ServerProcess server({"--model", model, "--data-dir", dir + "/data"}, dir + "/server.log");
  ASSERT_GT(server.port(), 0) << server.log();
  httplib::Client c("127.0.0.1", server.port());
  std::string body;
  int status = 0;
  for (int i = 0; i < 300; ++i) {
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    status = h->status;
    body = h->body;
    if (body.find("load_failed") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status, 503) << body;
  EXPECT_NE(body.find("model.safetensors"), std::string::npos) << body;  // the message names it
  auto gen = c.Post("/v1/completions", R"({"prompt":"나는","max_tokens":2})", "application/json");
  ASSERT_TRUE(gen);
  EXPECT_EQ(gen->status, 503) << gen->body;
  EXPECT_TRUE(c.Get("/v1/models"));  // the rest of the server still answers
  EXPECT_EQ(server.stop(), 0);
}

// `ktl serve --prompt-lookup`: completions speculate (the engine gets the server's settings), the
// greedy text equals the plain server's, and /metrics and /v1/serving count the draft tokens.
TEST_F(ServeOwnServerTest, SpeculativeServingMatchesPlainAndIsCounted) {
  const std::string body =
      R"({"prompt":"나는 학교에서 나는 학교에서 나는","max_tokens":24,"temperature":0,)"
      R"("ignore_eos":true})";
  std::string texts[2];
  for (int spec = 0; spec < 2; ++spec) {
    std::vector<std::string> args{"--model",       model_,
                                  "--data-dir",    dir_ + "/data" + std::to_string(spec),
                                  "--kv-cache-mb", "16"};
    if (spec) args.insert(args.end(), {"--prompt-lookup", "2", "--speculative", "3"});
    ServerProcess server(args, dir_ + "/server" + std::to_string(spec) + ".log");
    ASSERT_TRUE(server.wait_healthy()) << server.log();
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(60, 0);
    auto r = c.Post("/v1/completions", body, "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    texts[spec] = json::parse(r->body)["choices"][0]["text"].get<std::string>();
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    auto s = json::parse(c.Get("/v1/serving")->body);
    if (spec) {
      EXPECT_GT(s["spec_proposed"].get<int>(), 0) << s.dump();
      EXPECT_EQ(m->body.find("ktl_spec_draft_tokens_total 0\n"), std::string::npos) << m->body;
    } else {
      EXPECT_EQ(s["spec_proposed"].get<int>(), 0);
      EXPECT_NE(m->body.find("ktl_spec_draft_tokens_total 0\n"), std::string::npos);
    }
    EXPECT_EQ(server.stop(), 0) << server.log();
  }
  EXPECT_EQ(texts[1], texts[0]);
}
