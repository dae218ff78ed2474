// `ktl serve` end to end: a training job cancelled the instant it is submitted ends cancelled
// and the server keeps serving. (Issue 14: the cancel's SIGTERM could reach a child between
// fork and exec, run the server's inherited handler there, write to the server's self-pipe and
// drain the whole server.)
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/job_test_util.h"
#include "tests/support/server_test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string status_of(httplib::Client& c, int64_t id) {
  auto r = c.Get(("/v1/jobs/" + std::to_string(id)).c_str());
  if (!r || r->status != 200) return "";
  return json::parse(r->body, nullptr, false).value("status", "");
}

TEST(ServeJobs, CancelRightAfterSubmitNeverStopsTheServer) {
  ktl::jobs::testing::TempDir dir;
  const fs::path data = dir.path() / "data";
  fs::create_directories(data / "corpus");
  for (const char* f : {"training.yaml", "model_tiny.yaml"})
    fs::copy_file(fs::path(KTL_SOURCE_DIR) / "configs" / f, data / f);
  ktl::testing::ServerProcess server({"--data-dir", data.string()}, dir.str("serve.log"));
  ASSERT_GT(server.port(), 0) << server.log();
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(30, 0);
  const json spec = {{"kind", "train"},
                     {"options",
                      {{"config", "training.yaml"},
                       {"model_config", "model_tiny.yaml"},
                       {"data", "corpus"},
                       {"max_steps", 5}}}};
  int spawned = 0;  // rounds whose cancel met a started child
  for (int i = 0; i < 20; ++i) {
    auto r = c.Post("/v1/jobs", spec.dump(), "application/json");
    ASSERT_TRUE(r) << "round " << i << ": no answer\n" << server.log();
    ASSERT_EQ(r->status, 201) << r->body;
    const int64_t id = json::parse(r->body)["id"];
    auto cancel = c.Post(("/v1/jobs/" + std::to_string(id) + "/cancel").c_str(), "", "");
    ASSERT_TRUE(cancel) << "round " << i << ": the server stopped\n" << server.log();
    ASSERT_EQ(cancel->status, 200) << cancel->body;
    std::string st;
    ASSERT_TRUE(ktl::jobs::testing::eventually([&] {
      st = status_of(c, id);
      return st != "queued" && st != "running";
    })) << st;
    EXPECT_EQ(st, "cancelled") << "round " << i;
    auto ev = c.Get(("/v1/jobs/" + std::to_string(id) + "/events").c_str());
    if (ev && ev->body.find("\"pid\"") != std::string::npos) ++spawned;
    ASSERT_TRUE(server.alive()) << "round " << i << "\n" << server.log();
  }
  std::printf("%d of 20 cancels met a started child\n", spawned);
  EXPECT_EQ(server.log().find("draining"), std::string::npos) << server.log();
  EXPECT_EQ(server.stop(), 0);
}

}  // namespace
