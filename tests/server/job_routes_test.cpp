// /v1/jobs routes on a real httplib::Server (127.0.0.1, free port) with a JobRunner whose
// children are a fake `ktl` shell script.
#include "server/job_routes.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "core/adapters/lora_config.h"
#include "tests/support/job_test_util.h"

namespace ktl::server {
namespace {

namespace fs = std::filesystem;
using jobs::testing::eventually;
using jobs::testing::TempDir;
using nlohmann::json;

const char* kScript = R"(#!/bin/sh
cmd=$1; shift
ticks=0
for a in "$@"; do
  case "$a" in
    --max-steps=*) ticks=${a#--max-steps=} ;;
  esac
done
trap 'echo "got TERM"; exit 0' TERM
echo "fake $cmd start"
i=0
while [ $i -lt $ticks ]; do sleep 0.05; i=$((i+1)); done
echo "fake $cmd end"
exit 0
)";

class JobRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.path() / "data" / "shards");
    std::ofstream(dir_.path() / "data" / "training.yaml") << "max_steps: 10\n";
    std::ofstream(dir_.path() / "data" / "model.yaml") << "dim: 64\n";
    std::ofstream(dir_.path() / "secret.yaml") << "x: 1\n";
    std::string script = dir_.str("fake-ktl.sh");
    std::ofstream(script) << kScript;
    fs::permissions(script, fs::perms::owner_all);
    store_ = std::make_unique<jobs::JobStore>(dir_.str("jobs.db"));
    jobs::JobRunnerOptions ro;
    ro.executable = script;
    ro.spec_ctx.data_dir = dir_.str("data");
    ro.cancel_grace_ms = 3000;
    runner_ = std::make_unique<jobs::JobRunner>(*store_, ro);
    runner_->start();
    JobRoutesOptions opts;
    opts.spec_ctx = ro.spec_ctx;
    opts.sse_poll_ms = 20;
    opts.authorize = [](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization") == "Bearer k") return true;
      res.status = 401;
      res.set_content(R"({"error":{"message":"no","type":"authentication_error"}})",
                      "application/json");
      return false;
    };
    register_job_routes(server_, *store_, *runner_, opts);
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    ASSERT_TRUE(eventually([&] { return server_.is_running(); }));
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
    client_->set_default_headers({{"Authorization", "Bearer k"}});
    client_->set_read_timeout(30, 0);
  }

  void TearDown() override {
    runner_->stop();
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  json spec(const json& overrides = json::object()) const {
    json o = {{"config", "training.yaml"}, {"model_config", "model.yaml"}, {"data", "shards"}};
    for (auto it = overrides.begin(); it != overrides.end(); ++it) o[it.key()] = it.value();
    return {{"kind", "train"}, {"name", "route-test"}, {"options", o}};
  }

  // POSTs `body`; returns {status, parsed body}.
  std::pair<int, json> post(const std::string& path, const std::string& body) {
    auto r = client_->Post(path.c_str(), body, "application/json");
    if (!r) return {0, nullptr};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  std::pair<int, json> get(const std::string& path) {
    auto r = client_->Get(path.c_str());
    if (!r) return {0, nullptr};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  std::string status_of(int64_t id) {
    return get("/v1/jobs/" + std::to_string(id)).second.value("status", "");
  }

  TempDir dir_;
  std::unique_ptr<jobs::JobStore> store_;
  std::unique_ptr<jobs::JobRunner> runner_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(JobRoutesTest, BadSpecsAre400WithAMessageAndCreateNothing) {
  struct Case {
    std::string body;
    std::string message_part;
    std::string param;  // the error's "param" ("" = null)
  };
  json wrong_type = spec({{"max_steps", json::object()}});
  json outside = spec({{"config", dir_.str("secret.yaml")}});
  json dotdot = spec({{"config", "../secret.yaml"}});
  json missing_data = spec({{"data", "nope"}});
  std::vector<Case> cases = {
      {"{not json", "not valid JSON", ""},
      {R"({"kind":"bake"})", "unknown job kind 'bake'", "kind"},
      {R"({"options":{}})", "kind: is required", "kind"},
      {wrong_type.dump(), "options.max_steps", "options.max_steps"},
      {outside.dump(), "outside the allowed roots", "options.config"},
      {dotdot.dump(), "outside the allowed roots", "options.config"},
      {missing_data.dump(), "does not exist", "options.data"},
      // Specs the trainer would refuse a second after a 201 (issue 14).
      {spec({{"max_steps", -5}}).dump(), "must be positive", "options.max_steps"},
      {spec({{"max_steps", 1e30}}).dump(), "expected an integer", "options.max_steps"},
      {spec({{"max_steps", 2.5}}).dump(), "expected an integer", "options.max_steps"},
      {spec({{"learning_rate", -1}}).dump(), "must be positive", "options.learning_rate"},
      {spec({{"batch_size", 0}}).dump(), "must be positive", "options.batch_size"},
      {spec({{"help", true}}).dump(), "is not a training option", "options.help"},
  };
  for (const auto& c : cases) {
    auto [status, body] = post("/v1/jobs", c.body);
    EXPECT_EQ(status, 400) << c.body;
    ASSERT_TRUE(body.contains("error")) << c.body;
    EXPECT_EQ(body["error"]["type"], "invalid_request_error");
    EXPECT_EQ(body["error"]["code"], "invalid_job_spec");
    EXPECT_NE(body["error"]["message"].get<std::string>().find(c.message_part), std::string::npos)
        << body.dump();
    EXPECT_EQ(body["error"]["param"], c.param.empty() ? json(nullptr) : json(c.param))
        << body.dump();
  }
  EXPECT_TRUE(store_->list_jobs().empty());
  EXPECT_TRUE(get("/v1/jobs").second["data"].empty());
  EXPECT_FALSE(fs::exists(dir_.path() / "data" / "jobs"));  // no output dirs made either
  auto r = client_->Post("/v1/jobs", std::string(2 << 20, ' '), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST_F(JobRoutesTest, SubmitWatchAndReadResults) {
  auto [status, job] = post("/v1/jobs", spec({{"max_steps", 2}}).dump());
  ASSERT_EQ(status, 201) << job.dump();
  int64_t id = job["id"];
  EXPECT_EQ(job["status"], "queued");
  EXPECT_EQ(job["spec"]["options"]["data"], dir_.str("data/shards"));
  ASSERT_TRUE(eventually([&] { return status_of(id) == "succeeded"; }));

  store_->add_metrics(id, {{"train/loss", 1, 5.0, 0},
                           {"train/loss", 2, 4.0, 0},
                           {"train/loss", 3, 3.0, 0},
                           {"val/loss", 2, 4.5, 0}});
  store_->add_sample(id, {0, 2, "오늘 날씨가", "좋다", "greedy", 0});
  store_->add_checkpoint(id, {3, dir_.str("ck-3"), {{"val/loss", 4.5}}, 0});

  auto [s1, detail] = get("/v1/jobs/" + std::to_string(id));
  EXPECT_EQ(s1, 200);
  EXPECT_EQ(detail["latest_metrics"]["train/loss"]["step"], 3);
  EXPECT_EQ(detail["checkpoints"][0]["path"], dir_.str("ck-3"));
  EXPECT_TRUE(detail["started_at"].is_number());
  EXPECT_TRUE(detail["finished_at"].is_number());

  auto [s2, m] = get("/v1/jobs/" + std::to_string(id) + "/metrics?key=train/loss&since_step=2");
  EXPECT_EQ(s2, 200);
  ASSERT_EQ(m["series"]["train/loss"].size(), 2u);
  EXPECT_EQ(m["series"]["train/loss"][0]["step"], 2);
  EXPECT_FALSE(m["series"].contains("val/loss"));
  EXPECT_EQ(get("/v1/jobs/" + std::to_string(id) + "/metrics").second["series"].size(), 2u);
  EXPECT_EQ(get("/v1/jobs/" + std::to_string(id) + "/metrics?since_step=x").first, 400);

  auto samples = get("/v1/jobs/" + std::to_string(id) + "/samples").second;
  EXPECT_EQ(samples["data"][0]["text"], "좋다");
  auto logs = get("/v1/jobs/" + std::to_string(id) + "/logs?tail=2").second["data"];
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_EQ(logs[1]["line"], "fake train end");

  EXPECT_EQ(get("/v1/jobs?status=succeeded").second["data"][0]["id"], id);
  EXPECT_TRUE(get("/v1/jobs?status=running").second["data"].empty());
  EXPECT_EQ(get("/v1/jobs?status=bogus").first, 400);
  // Final states refuse cancel and resume with 409.
  EXPECT_EQ(post("/v1/jobs/" + std::to_string(id) + "/cancel", "").first, 409);
  auto [s3, conflict] = post("/v1/jobs/" + std::to_string(id) + "/resume", "");
  EXPECT_EQ(s3, 409);
  EXPECT_EQ(conflict["error"]["code"], "invalid_job_state");
}

// The dashboard tells a LoRA checkpoint (adapter_config.json in its directory) from a full one by
// the checkpoint's "adapter" field, read from the files the trainer wrote.
TEST_F(JobRoutesTest, CheckpointsSayWhetherTheyAreAdapters) {
  auto [status, job] = post("/v1/jobs", spec({{"max_steps", 1}}).dump());
  ASSERT_EQ(status, 201) << job.dump();
  int64_t id = job["id"];
  ASSERT_TRUE(eventually([&] { return status_of(id) == "succeeded"; }));

  LoraConfig lora;
  lora.rank = 8;
  lora.alpha = 16;
  lora.targets = parse_lora_targets("q,v,down");
  fs::create_directories(dir_.path() / "lora-2");
  std::ofstream(dir_.path() / "lora-2" / kAdapterConfigFile) << lora_config_to_peft_json(lora);
  std::ofstream(dir_.path() / "lora-2" / "lora_base.json")
      << json{{"base", dir_.str("base")}, {"weights_sha256", "ab"}}.dump();
  fs::create_directories(dir_.path() / "full-1");
  std::ofstream(dir_.path() / "full-1" / "model.safetensors") << "x";
  fs::create_directories(dir_.path() / "bad-3");
  std::ofstream(dir_.path() / "bad-3" / kAdapterConfigFile) << R"({"r": 4, "use_dora": true})";
  store_->add_checkpoint(id, {1, dir_.str("full-1"), {}, 0});
  store_->add_checkpoint(id, {2, dir_.str("lora-2"), {}, 0});
  store_->add_checkpoint(id, {3, dir_.str("bad-3"), {}, 0});
  store_->add_checkpoint(id, {4, dir_.str("gone-4"), {}, 0});

  auto [s, detail] = get("/v1/jobs/" + std::to_string(id));
  ASSERT_EQ(s, 200);
  std::map<int, json> by_step;
  for (const json& c : detail["checkpoints"]) by_step[c["step"].get<int>()] = c["adapter"];
  ASSERT_EQ(by_step.size(), 4u) << detail.dump();
  EXPECT_TRUE(by_step[1].is_null());
  EXPECT_TRUE(by_step[4].is_null()) << "a checkpoint directory that is gone is no adapter";
  EXPECT_EQ(by_step[2]["rank"], 8);
  EXPECT_EQ(by_step[2]["alpha"], 16.0);
  EXPECT_EQ(by_step[2]["targets"], json::array({"q", "v", "down"}));
  EXPECT_EQ(by_step[2]["base"], dir_.str("base"));
  ASSERT_TRUE(by_step[3].is_object());
  EXPECT_NE(by_step[3]["error"].get<std::string>().find("use_dora"), std::string::npos)
      << by_step[3].dump();
  EXPECT_TRUE(by_step[3]["base"].is_null());
}

TEST_F(JobRoutesTest, UnknownJobsAre404AndAuthIsCheckedFirst) {
  for (const char* p : {"/v1/jobs/99", "/v1/jobs/99/metrics", "/v1/jobs/99/samples",
                        "/v1/jobs/99/logs", "/v1/jobs/99/events"}) {
    auto [status, body] = get(p);
    EXPECT_EQ(status, 404) << p;
    EXPECT_EQ(body["error"]["type"], "not_found_error") << p;
  }
  EXPECT_EQ(post("/v1/jobs/99/cancel", "").first, 404);
  EXPECT_EQ(post("/v1/jobs/99/resume", "").first, 404);
  httplib::Client anon("127.0.0.1", port_);
  auto r = anon.Post("/v1/jobs", spec().dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_TRUE(get("/v1/jobs").second["data"].empty());
}

TEST_F(JobRoutesTest, CancelThenResume) {
  int64_t id = post("/v1/jobs", spec({{"max_steps", 600}}).dump()).second["id"];
  ASSERT_TRUE(eventually([&] { return status_of(id) == "running"; }));
  auto [status, job] = post("/v1/jobs/" + std::to_string(id) + "/cancel", "");
  EXPECT_EQ(status, 200);
  EXPECT_TRUE(job["cancel_requested"] == true || job["status"] == "cancelled") << job.dump();
  ASSERT_TRUE(eventually([&] { return status_of(id) == "cancelled"; }));
  auto [s2, resumed] = post("/v1/jobs/" + std::to_string(id) + "/resume", "");
  EXPECT_EQ(s2, 200);
  EXPECT_EQ(resumed["resume_count"], 1);
  ASSERT_TRUE(eventually([&] { return status_of(id) == "running"; }));
  post("/v1/jobs/" + std::to_string(id) + "/cancel", "");
  ASSERT_TRUE(eventually([&] { return status_of(id) == "cancelled"; }));
}

TEST_F(JobRoutesTest, EventStreamDeliversStatusAndMetricsThenEnds) {
  int64_t id = post("/v1/jobs", spec({{"max_steps", 600}}).dump()).second["id"];
  // Metrics written while the stream is open arrive on it; then the job is cancelled.
  std::thread writer([&] {
    eventually([&] { return store_->require_job(id).status == jobs::JobStatus::kRunning; });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    store_->add_metrics(id, {{"train/loss", 1, 2.5, 0}});
    runner_->cancel(id);
  });
  std::string body;
  auto r = client_->Get(("/v1/jobs/" + std::to_string(id) + "/events").c_str(),
                        [&](const char* data, size_t n) {
                          body.append(data, n);
                          return true;
                        });
  writer.join();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  EXPECT_NE(body.find("event: status\ndata: {\"from\":null,\"job_id\":" + std::to_string(id)),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("\"to\":\"running\""), std::string::npos) << body;
  EXPECT_NE(body.find("event: metric"), std::string::npos) << body;
  EXPECT_NE(body.find("\"key\":\"train/loss\""), std::string::npos) << body;
  EXPECT_NE(body.find("event: cancel_requested"), std::string::npos) << body;
  EXPECT_NE(body.find("\"to\":\"cancelled\""), std::string::npos) << body;
  EXPECT_LT(body.find("\"to\":\"running\""), body.find("event: metric"));
  EXPECT_NE(body.find("event: end\ndata: {\"job_id\":" + std::to_string(id) +
                      ",\"status\":\"cancelled\"}"),
            std::string::npos)
      << body;

  // Reconnecting with Last-Event-ID replays only what came after it.
  auto events = store_->events_since(id, 0);
  ASSERT_GE(events.size(), 3u);
  int64_t cut = events[events.size() - 2].id;
  std::string replay;
  client_->Get(("/v1/jobs/" + std::to_string(id) + "/events").c_str(),
               {{"Last-Event-ID", std::to_string(cut)}}, [&](const char* d, size_t n) {
                 replay.append(d, n);
                 return true;
               });
  EXPECT_EQ(replay.find("id: " + std::to_string(cut) + "\n"), std::string::npos) << replay;
  EXPECT_NE(replay.find("id: " + std::to_string(events.back().id) + "\n"), std::string::npos);
  EXPECT_NE(replay.find("event: end"), std::string::npos);
}

}  // namespace
}  // namespace ktl::server

namespace ktl::server {
namespace {

TEST_F(JobRoutesTest, SweepRankingAndRecipe) {
  std::ofstream(dir_.path() / "data" / "sweep.yaml")
      << "trials: 2\nparams:\n  warmup_steps: [1, 2]\n";
  json sweep = {
      {"kind", "sweep"},
      {"name", "s"},
      {"options", {{"space", "sweep.yaml"}, {"model_config", "model.yaml"}, {"data", "shards"}}}};
  auto [code, job] = post("/v1/jobs", sweep.dump());
  ASSERT_EQ(code, 201) << job.dump();
  const std::string id = std::to_string(job["id"].get<int64_t>());
  // Before any rung finished: an empty ranking, no recipe.
  auto [c0, empty] = get("/v1/jobs/" + id + "/sweep");
  EXPECT_EQ(c0, 200);
  EXPECT_TRUE(empty["ranking"].empty());
  EXPECT_TRUE(empty["recipe"].is_null());
  EXPECT_EQ(post("/v1/jobs/" + id + "/recipe", R"({"name":"tiny"})").first, 409);
  // What the sweep child writes.
  const fs::path out = dir_.path() / "data" / "jobs" / id / "sweep";
  fs::create_directories(out);
  std::ofstream(out / "sweep_state.json")
      << R"({"halving": {"rungs": [5, 10]}, "elapsed_s": 12.5, "finished": true,
             "ranking": [{"id": 1, "state": "completed", "val_loss": 3.5},
                         {"id": 0, "state": "stopped", "val_loss": 4.0}]})";
  std::ofstream(out / "recipe.yaml") << "warmup_steps: 2\n";
  auto [c1, s] = get("/v1/jobs/" + id + "/sweep");
  ASSERT_EQ(c1, 200) << s.dump();
  EXPECT_EQ(s["ranking"][0]["id"], 1);
  EXPECT_EQ(s["rungs"], json::array({5, 10}));
  EXPECT_TRUE(s["finished"].get<bool>());
  EXPECT_EQ(s["recipe"], "warmup_steps: 2\n");
  EXPECT_EQ(post("/v1/jobs/" + id + "/recipe", R"({"name":"../x"})").first, 400);
  EXPECT_EQ(post("/v1/jobs/" + id + "/recipe", R"({"nom":"x"})").first, 400);
  auto [c2, saved] = post("/v1/jobs/" + id + "/recipe", R"({"name":"tiny"})");
  EXPECT_EQ(c2, 201) << saved.dump();
  std::ifstream in(dir_.path() / "data" / "recipes" / "tiny.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "warmup_steps: 2\n");
  // Not a sweep: 409.
  auto [c3, train] = post("/v1/jobs", spec().dump());
  ASSERT_EQ(c3, 201);
  EXPECT_EQ(get("/v1/jobs/" + std::to_string(train["id"].get<int64_t>()) + "/sweep").first, 409);
}


// Flips one byte inside `needle` in a closed database file (its pages are all in the main file).
void flip_in_file(const std::string& path, const std::string& needle) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos) << needle;
  f.seekp(static_cast<std::streamoff>(at + 3));
  f.put(static_cast<char>(needle[3] ^ 1));
}

// Job routes over the store at `db` on a free port; `test` gets a client.
void with_job_routes(const std::string& db, const std::function<void(httplib::Client&)>& test) {
  jobs::JobStore store(db);
  jobs::JobRunnerOptions ro;
  ro.executable = "/bin/false";
  jobs::JobRunner runner(store, ro);  // not started: no child touches the store
  httplib::Server server;
  JobRoutesOptions opts;
  opts.sse_poll_ms = 20;
  register_job_routes(server, store, runner, opts);
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread t([&] { server.listen_after_bind(); });
  ASSERT_TRUE(eventually([&] { return server.is_running(); }));
  httplib::Client c("127.0.0.1", port);
  test(c);
  server.stop();
  t.join();
}

// A page of ktl.db that fails its checksum: a route that reads it answers a 500 JSON error
// naming the file (code database_corrupt), an event stream ends with an error event, and the
// server keeps serving.
TEST(JobRoutesCorruptDatabase, Answers500NamingTheFileAndKeepsServing) {
  TempDir dir;
  const std::string db = dir.str("ktl.db");
  {
    jobs::JobStore store(db);
    jobs::NewJob j;
    j.name = "marker-job-0123456789";
    j.spec_json = "{}";
    const int64_t id = store.create_job(j).id;
    store.add_event(id, "note", R"({"text":"marker-event-0123456789"})");
  }
  flip_in_file(db, "marker-event-0123456789");  // the events table's page
  with_job_routes(db, [&](httplib::Client& c) {
    auto job = c.Get("/v1/jobs/1");  // the job's own page is intact
    ASSERT_TRUE(job);
    EXPECT_EQ(job->status, 200) << job->body;
    auto events = c.Get("/v1/jobs/1/events");
    ASSERT_TRUE(events);
    EXPECT_NE(events->body.find("event: error"), std::string::npos) << events->body;
    EXPECT_NE(events->body.find(db + ": database corrupt (page checksum mismatch)"),
              std::string::npos)
        << events->body;
  });
  flip_in_file(db, "marker-job-0123456789");  // now the jobs table's page too
  with_job_routes(db, [&](httplib::Client& c) {
    for (const char* path : {"/v1/jobs/1", "/v1/jobs", "/v1/jobs/1/events"}) {
      auto r = c.Get(path);
      ASSERT_TRUE(r) << path;
      EXPECT_EQ(r->status, 500) << path;
      const json body = json::parse(r->body, nullptr, false);
      EXPECT_EQ(body["error"]["code"], "database_corrupt") << r->body;
      EXPECT_NE(body["error"]["message"].get<std::string>().find(db + ": database corrupt"),
                std::string::npos)
          << r->body;
    }
    auto bad = c.Post("/v1/jobs", "{not json", "application/json");  // still serving
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400);
  });
}

}  // namespace
}  // namespace ktl::server
