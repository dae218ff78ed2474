// `ktl serve` under hostile or careless clients (issue 14): bodies that break the JSON parser,
// malformed headers, wrong methods, abandoned non-streamed requests, chunked bodies over the
// limit, slow and numerous connections. One server with small limits for the whole suite.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/server_test_util.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ktl::testing::RawConnection;
using ktl::testing::ServerProcess;
using std::chrono::milliseconds;

constexpr int kMaxConnections = 40;
constexpr int kBodyLimit = 64 << 10;  // --max-body-mb 0.0625

class ServeLimitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    signal(SIGPIPE, SIG_IGN);
    dir_ = new std::string(fs::temp_directory_path() /
                           ("ktl_serve_limits_" + std::to_string(getpid())));
    fs::remove_all(*dir_);
    std::string why;
    const std::string model = ktl::testing::make_tiny_served_model(*dir_ + "/m", &why);
    if (model.empty()) {
      (fs::exists(ktl::testing::ktl_bin()) ? failure_ : skip_) = new std::string(why);
      return;
    }
    server_ = new ServerProcess(
        {"--model", model, "--data-dir", *dir_ + "/data", "--kv-cache-mb", "64", "--max-streams",
         "8", "--max-connections", std::to_string(kMaxConnections), "--max-body-mb", "0.0625",
         "--read-timeout", "1", "--request-timeout", "2", "--max-headers", "16"},
        *dir_ + "/server.log");
    ASSERT_GT(server_->port(), 0) << server_->log();
    if (!server_->wait_healthy()) FAIL() << "server never became healthy\n" << server_->log();
  }

  static void TearDownTestSuite() {
    if (server_) EXPECT_EQ(server_->stop(), 0) << server_->log();
    delete server_;
    server_ = nullptr;
    if (dir_) fs::remove_all(*dir_);
  }

  void SetUp() override {
    if (skip_) GTEST_SKIP() << *skip_;
    if (failure_) FAIL() << *failure_;
    ASSERT_TRUE(server_ && server_->alive()) << (server_ ? server_->log() : "");
  }

  static int port() { return server_->port(); }

  static httplib::Client client() {
    httplib::Client c("127.0.0.1", port());
    c.set_read_timeout(30, 0);
    return c;
  }

  static httplib::Result post(const std::string& path, const std::string& body) {
    return client().Post(path.c_str(), body, "application/json");
  }

  static double metric(const std::string& name) {
    auto r = client().Get("/metrics");
    if (!r) return -1;
    std::istringstream in(r->body);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    return 0;
  }

  // Sends `request` on a fresh connection and returns the raw response.
  static std::string raw(const std::string& request, milliseconds timeout = milliseconds(5000)) {
    RawConnection c(port());
    EXPECT_TRUE(c.ok() && c.send(request));
    return c.read_response(timeout);
  }

  static void expect_json_error(int status, const std::string& response, int want,
                                const std::string& what) {
    EXPECT_EQ(status, want) << what << ": " << response;
    const std::string body = response.substr(response.find("\r\n\r\n") + 4);
    json j = json::parse(response.rfind("HTTP/", 0) == 0 ? body : response, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << what << ": " << response;
    EXPECT_TRUE(j["error"]["message"].is_string()) << what;
    EXPECT_TRUE(j["error"]["code"].is_string()) << what;
  }

  static std::string* dir_;
  static std::string* skip_;
  static std::string* failure_;
  static ServerProcess* server_;
};

std::string* ServeLimitsTest::dir_ = nullptr;
std::string* ServeLimitsTest::skip_ = nullptr;
std::string* ServeLimitsTest::failure_ = nullptr;
ServerProcess* ServeLimitsTest::server_ = nullptr;

TEST_F(ServeLimitsTest, BodiesThatBreakTheJsonParserAre400) {
  const std::string chat_head = R"({"messages":[{"role":"user","content":"a"}],)";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/v1/completions", R"({"prompt":"a","max_tokens":1e309})"},
      {"/v1/completions", R"({"prompt":"a","max_tokens":1e30})"},
      {"/v1/completions", R"({"prompt":"a","max_tokens":-5})"},
      {"/v1/completions", R"({"prompt":"a","max_tokens":2.5})"},
      {"/v1/chat/completions", chat_head + R"("max_tokens":1e309})"},
      {"/v1/chat/completions",
       R"({"messages":[{"role":"user","content":[{"type":1,"text":"a"}]}]})"},
      {"/v1/chat/completions",
       R"({"messages":[{"role":"user","content":[{"type":null,"text":"a"}]}]})"},
      {"/v1/tokenize", R"({"prompt":"a","add_special_tokens":1e309})"},
      {"/v1/detokenize", R"({"tokens":[1e309]})"},
      {"/v1/models/load", R"({"path":"m","wait":1e309})"},
      {"/v1/completions", std::string(R"({"prompt":"a","max_tokens":1})") + '\0' + "trailing"},
      {"/v1/models/load", std::string(R"({"path":"m"})") + '\0' + "trailing"},
  };
  for (const auto& [path, body] : cases) {
    auto r = post(path, body);
    ASSERT_TRUE(r) << path;
    expect_json_error(r->status, r->body, 400, path + " " + body);
  }
}

TEST_F(ServeLimitsTest, HeadersAreReadStrictly) {
  const std::string head = "GET /health HTTP/1.1\r\nHost: x\r\n";
  auto status = [&](const std::string& extra) {
    return RawConnection::status_of(raw(head + extra + "\r\n"));
  };
  EXPECT_EQ(status(""), 200);
  EXPECT_EQ(status("X-Ok: 1\r\n"), 200);
  EXPECT_EQ(status("no colon in this line\r\n"), 400);
  EXPECT_EQ(status("Bad Name: x\r\n"), 400);
  EXPECT_EQ(status(std::string("X-Nul: a\0b\r\n", 12)), 400);
  EXPECT_EQ(status("X-Bare-LF: x\n"), 400);
  std::string many;
  for (int i = 0; i < 16; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(status(many), 400);  // 17 header lines with Host, limit 16
  EXPECT_EQ(status("X-Long: " + std::string(9000, 'a') + "\r\n"), 400);
  const std::string nul_target = raw(std::string("GET /hea\0lth HTTP/1.1\r\nHost: x\r\n\r\n", 34));
  EXPECT_EQ(RawConnection::status_of(nul_target), 400) << nul_target;
  EXPECT_NE(nul_target.find("request line"), std::string::npos) << nul_target;
  const std::string long_target = raw("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n");
  EXPECT_EQ(RawConnection::status_of(long_target), 414) << long_target;
  const std::string resp = raw(head + "no colon\r\n\r\n");
  expect_json_error(RawConnection::status_of(resp), resp, 400, "no colon");
  EXPECT_NE(resp.find("colon"), std::string::npos) << resp;
  // Last-Event-ID is a whole non-negative integer or the request is refused.
  EXPECT_EQ(status("Last-Event-ID: 5\r\n"), 200);
  for (const char* bad : {"5abc", "-1", " 5x", "1e3", "99999999999999999999"})
    EXPECT_EQ(status(std::string("Last-Event-ID: ") + bad + "\r\n"), 400) << bad;
  const std::string events = raw("GET /v1/jobs/1/events HTTP/1.1\r\nLast-Event-ID: 5abc\r\n\r\n");
  EXPECT_EQ(RawConnection::status_of(events), 400) << events;
}

TEST_F(ServeLimitsTest, WrongMethodIs405WithAllow) {
  struct Case {
    const char* method;
    const char* path;
    const char* allow;
  };
  for (const Case& c :
       {Case{"DELETE", "/v1/completions", "POST"}, Case{"GET", "/v1/chat/completions", "POST"},
        Case{"PUT", "/v1/tokenize", "POST"}, Case{"POST", "/health", "GET, HEAD"},
        Case{"POST", "/metrics", "GET, HEAD"}, Case{"DELETE", "/v1/models", "GET, HEAD"},
        Case{"PUT", "/v1/jobs", "GET, HEAD, POST"}, Case{"DELETE", "/v1/jobs/7/cancel", "POST"},
        Case{"POST", "/v1/jobs/7/events", "GET, HEAD"}, Case{"PATCH", "/v1/jobs/7", "GET, HEAD"}}) {
    const std::string resp = raw(std::string(c.method) + " " + c.path +
                                 " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    expect_json_error(RawConnection::status_of(resp), resp, 405,
                      std::string(c.method) + " " + c.path);
    EXPECT_EQ(RawConnection::header_of(resp, "Allow"), c.allow) << c.method << " " << c.path;
  }
  // No method has a route: still 404.
  const std::string none = raw("GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(RawConnection::status_of(none), 404) << none;
  // A job that does not exist is the route's own 404, not a 405.
  auto missing = client().Get("/v1/jobs/424242");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(ServeLimitsTest, AbandonedNonStreamedRequestIsCancelled) {
  const double cancelled_before = metric("ktl_requests_finished_total{reason=\"cancelled\"}");
  // 4 requests x 16 choices x 1000 tokens: seconds of decoding for nobody once clients leave.
  const std::string body =
      R"({"prompt":"고양이가","max_tokens":1000,"n":16,"ignore_eos":true,"stream":false})";
  constexpr int kRequests = 4;
  std::vector<std::unique_ptr<RawConnection>> clients;
  for (int i = 0; i < kRequests; ++i) {
    clients.push_back(std::make_unique<RawConnection>(port()));
    ASSERT_TRUE(clients.back()->send(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body));
  }
  for (int i = 0; i < 100 && metric("ktl_http_streams_active") < kRequests; ++i)
    std::this_thread::sleep_for(milliseconds(20));
  ASSERT_EQ(metric("ktl_http_streams_active"), kRequests) << "the requests never started";
  clients.clear();  // every client leaves without reading its answer
  const auto closed_at = Clock::now();
  double running = -1, waiting = -1, active = -1;
  while (Clock::now() - closed_at < std::chrono::seconds(2)) {
    running = metric("ktl_requests_running");
    waiting = metric("ktl_requests_waiting");
    active = metric("ktl_http_streams_active");
    if (running == 0 && waiting == 0 && active == 0) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(running, 0) << "the engine kept decoding for a client that left";
  EXPECT_EQ(waiting, 0);
  EXPECT_EQ(active, 0) << "the admission slot was not freed";
  EXPECT_GE(metric("ktl_requests_finished_total{reason=\"cancelled\"}"),
            cancelled_before + kRequests);
}

// A chunked body whose chunks add up to `bytes` of valid JSON (unknown fields are ignored).
std::string chunked_json(size_t bytes) {
  const std::string head = R"({"prompt":"나는","max_tokens":1,"pad":")";
  std::string json_body = head + std::string(bytes - head.size() - 2, 'x') + "\"}";
  std::string out;
  for (size_t off = 0; off < json_body.size(); off += 8192) {
    const std::string part = json_body.substr(off, 8192);
    char len[16];
    std::snprintf(len, sizeof len, "%zx", part.size());
    out += std::string(len) + "\r\n" + part + "\r\n";
  }
  return out + "0\r\n\r\n";
}

TEST_F(ServeLimitsTest, BodyLimitHoldsForChunkedAndUnsentBodies) {
  const std::string head =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  const std::string small = raw(head + "Transfer-Encoding: chunked\r\n\r\n" + chunked_json(4096));
  EXPECT_EQ(RawConnection::status_of(small), 200) << small;
  const std::string big =
      raw(head + "Transfer-Encoding: chunked\r\n\r\n" + chunked_json(4 * kBodyLimit));
  expect_json_error(RawConnection::status_of(big), big, 413, "chunked body over the limit");
  // A Content-Length over the limit is refused at once, before any body byte is read.
  RawConnection c(port());
  const auto t0 = Clock::now();
  ASSERT_TRUE(c.send(head + "Content-Length: 100000000\r\n\r\n"));
  const std::string declared = c.read_response(milliseconds(5000));
  EXPECT_EQ(RawConnection::status_of(declared), 413) << declared;
  EXPECT_LT(Clock::now() - t0, milliseconds(900));
  // Asked first (Expect: 100-continue), the answer is 413 instead of "100 Continue".
  const std::string asked = raw(head + "Expect: 100-continue\r\nContent-Length: 100000000\r\n\r\n");
  EXPECT_EQ(RawConnection::status_of(asked), 413) << asked;
  for (const char* te :
       {"Transfer-Encoding: gzip\r\n", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5x\r\n", "Content-Length: 1\r\nContent-Length: 1\r\n"})
    EXPECT_EQ(RawConnection::status_of(raw(head + te + "\r\n{")), 400) << te;
}

TEST_F(ServeLimitsTest, SlowClientsGet408AndCannotStarveHealth) {
  // A body shorter than its Content-Length: 408 once the reads time out, not a worker held.
  RawConnection partial(port());
  const auto t0 = Clock::now();
  ASSERT_TRUE(partial.send(
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"prompt\""));
  const std::string timed_out = partial.read_response(milliseconds(5000));
  EXPECT_EQ(RawConnection::status_of(timed_out), 408) << timed_out;
  EXPECT_NE(timed_out.find("request_timeout"), std::string::npos) << timed_out;
  EXPECT_LT(Clock::now() - t0, milliseconds(2500));

  // 30 slowloris connections, each sending a header line every 400 ms (under the 1 s read
  // timeout): the 2 s request deadline ends them, and /health answers meanwhile.
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 30; ++i) {
    slow.push_back(std::make_unique<RawConnection>(port()));
    ASSERT_TRUE(slow.back()->send("GET /health HTTP/1.1\r\n"));
  }
  const auto start = Clock::now();
  std::atomic<bool> stop{false};
  std::thread dribble([&] {
    for (int line = 0; !stop && line < 20; ++line) {
      for (auto& s : slow) s->send("X-Slow-" + std::to_string(line) + ": 1\r\n");
      std::this_thread::sleep_for(milliseconds(400));
    }
  });
  for (int i = 0; i < 5; ++i) {
    const auto t = Clock::now();
    auto h = client().Get("/health");
    ASSERT_TRUE(h) << "no answer from /health with 30 slow clients";
    EXPECT_EQ(h->status, 200);
    EXPECT_LT(Clock::now() - t, milliseconds(1500));  // generous: the machine is shared
    std::this_thread::sleep_for(milliseconds(200));
  }
  int closed = 0;
  for (auto& s : slow)
    closed += s->closed_by_peer(
        std::chrono::duration_cast<milliseconds>(milliseconds(5000) - (Clock::now() - start)));
  stop = true;
  dribble.join();
  EXPECT_EQ(closed, 30) << "slow requests outlived the request deadline";
}

TEST_F(ServeLimitsTest, ConnectionsBeyondTheLimitGet503) {
  std::this_thread::sleep_for(milliseconds(300));  // connections of earlier tests wind down
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < kMaxConnections; ++i) idle.push_back(std::make_unique<RawConnection>(port()));
  // Every idle one is soon taken by a worker (they wait up to 5 s for a first byte).
  std::string busy;
  for (int i = 0; i < 20 && RawConnection::status_of(busy) != 503; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    busy = raw("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  expect_json_error(RawConnection::status_of(busy), busy, 503, "over the connection limit");
  EXPECT_NE(busy.find("too_many_connections"), std::string::npos) << busy;
  idle.clear();
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    std::this_thread::sleep_for(milliseconds(50));
    auto h = client().Get("/health");
    status = h ? h->status : 0;
  }
  EXPECT_EQ(status, 200) << "the connection slots did not come back";
  // Fewer connections than generation slots + 16 would starve /health: refused at start.
  const std::string log = *dir_ + "/refused.log";
  const int rc = std::system((ktl::testing::ktl_bin() +
                              " serve --port 0 --max-streams 64 --max-connections 40 --data-dir " +
                              *dir_ + "/d1 > " + log + " 2>&1")
                                 .c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 2) << ktl::testing::slurp(log);
  EXPECT_NE(ktl::testing::slurp(log).find("--max-streams + 16"), std::string::npos)
      << ktl::testing::slurp(log);
}

}  // namespace
