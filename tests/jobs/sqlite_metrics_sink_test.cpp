#include "jobs/sqlite_metrics_sink.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "jobs/child_reporting.h"
#include "jobs/job_store.h"
#include "tests/support/job_test_util.h"

namespace ktl::jobs {
namespace {

using testing::eventually;
using testing::TempDir;

int64_t make_job(JobStore& store) {
  NewJob j;
  j.name = "sink";
  j.spec_json = "{}";
  return store.create_job(j).id;
}

TEST(SqliteMetricsSink, BackgroundThreadWritesWithoutFlush) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  int64_t id = make_job(store);
  SqliteMetricsSinkOptions opts;
  opts.flush_interval_ms = 50;
  SqliteMetricsSink sink(store.db_path(), id, opts);
  sink.metric("train/loss", 1, 4.5);
  sink.sample(1, "오늘 날씨가", "맑다", "greedy");
  sink.checkpoint(1, dir.str("checkpoint-1"), {{"val/loss", 4.0}});
  sink.progress(1, 10);
  // Seen from the server's own connection, with no flush() call.
  EXPECT_TRUE(eventually([&] { return store.require_job(id).progress_step == 1; }));
  EXPECT_EQ(store.metrics(id, "train/loss").size(), 1u);
  EXPECT_EQ(store.samples(id).size(), 1u);
  ASSERT_EQ(store.checkpoints(id).size(), 1u);
  EXPECT_DOUBLE_EQ(store.checkpoints(id)[0].metrics.at("val/loss"), 4.0);
  EXPECT_EQ(store.require_job(id).progress_total, 10);
  std::set<std::string> types;
  for (const auto& e : store.events_since(id, 0)) types.insert(e.type);
  for (const char* t : {"metric", "sample", "checkpoint", "progress"})
    EXPECT_EQ(types.count(t), 1u) << t;
  EXPECT_EQ(sink.pending(), 0u);
}

TEST(SqliteMetricsSink, ResumeThatReplaysStepsLeavesOneRowPerKeyAndStep) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  int64_t id = make_job(store);
  {
    // The first run reaches step 8; its last checkpoint is at step 5.
    SqliteMetricsSink first(store.db_path(), id);
    for (int s = 1; s <= 8; ++s) first.metric("train/loss", s, 10.0 / s);
    first.metric("val/loss", 5, 4.0);
    first.checkpoint(5, dir.str("checkpoint-5"), {});
  }
  {
    // Resumed from checkpoint-5: steps 6..8 run (and are reported) again, then 9..10.
    SqliteMetricsSink resumed(store.db_path(), id);
    for (int s = 6; s <= 10; ++s) resumed.metric("train/loss", s, 100.0 + s);
    resumed.metric("val/loss", 5, 4.0);
  }
  auto loss = store.metrics(id, "train/loss");
  ASSERT_EQ(loss.size(), 10u);
  for (size_t i = 0; i < loss.size(); ++i) {
    EXPECT_EQ(loss[i].step, static_cast<int64_t>(i) + 1);
    EXPECT_DOUBLE_EQ(loss[i].value, loss[i].step > 5 ? 100.0 + loss[i].step : 10.0 / loss[i].step);
  }
  EXPECT_EQ(store.metrics(id, "val/loss").size(), 1u);
  auto latest = store.latest_metrics(id);
  ASSERT_FALSE(latest.empty());
  EXPECT_EQ(latest[0].step, 10);
}

TEST(SqliteMetricsSink, CheckpointsDeletedByRotationAreNotListed) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  int64_t id = make_job(store);
  SqliteMetricsSink sink(store.db_path(), id);
  for (int s = 1; s <= 4; ++s) {
    sink.checkpoint(s, dir.str("checkpoint-" + std::to_string(s)), {});
    if (s > 2) sink.checkpoint_deleted(s - 2, dir.str("checkpoint-" + std::to_string(s - 2)));
  }
  sink.checkpoint(4, dir.str("checkpoint-4"), {{"val/loss", 2.0}});  // the same one again
  sink.flush();
  auto cps = store.checkpoints(id);
  ASSERT_EQ(cps.size(), 2u);
  EXPECT_EQ(cps[0].path, dir.str("checkpoint-3"));
  EXPECT_EQ(cps[1].path, dir.str("checkpoint-4"));
  EXPECT_DOUBLE_EQ(cps[1].metrics.at("val/loss"), 2.0);
  std::vector<int64_t> deleted;
  for (const auto& e : store.events_since(id, 0))
    if (e.type == "checkpoint_deleted")
      deleted.push_back(nlohmann::json::parse(e.payload_json).at("step").get<int64_t>());
  EXPECT_EQ(deleted, (std::vector<int64_t>{1, 2}));
}

TEST(SqliteMetricsSink, NothingLostAtDestruction) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  int64_t id = make_job(store);
  {
    SqliteMetricsSinkOptions opts;
    opts.flush_interval_ms = 60000;  // only the destructor writes
    SqliteMetricsSink sink(store.db_path(), id, opts);
    for (int s = 0; s < 2000; ++s) sink.metric("train/loss", s, 1.0 / (s + 1));
    EXPECT_EQ(store.metrics(id).size(), 0u);
  }
  auto pts = store.metrics(id, "train/loss");
  ASSERT_EQ(pts.size(), 2000u);
  for (int s = 0; s < 2000; ++s) EXPECT_EQ(pts[s].step, s);
}

TEST(SqliteMetricsSink, DoesNotBlockWhileTheDatabaseIsLockedAndCatchesUp) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  int64_t id = make_job(store);
  SqliteMetricsSinkOptions opts;
  opts.flush_interval_ms = 20;
  SqliteMetricsSink sink(store.db_path(), id, opts);
  {
    SqliteDb other(store.db_path());
    Transaction hold(other);  // another writer holds the write lock
    for (int s = 0; s < 500; ++s) sink.metric("train/loss", s, 1.0);  // returns: buffered only
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_GT(sink.pending() + 0, 0u);
    hold.commit();
  }
  EXPECT_TRUE(eventually([&] { return store.metrics(id).size() == 500; }));
}

TEST(SqliteMetricsSink, LogLinesOnlyWhenAsked) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  int64_t id = make_job(store);
  {
    SqliteMetricsSink quiet(store.db_path(), id);
    quiet.log("not stored");
    SqliteMetricsSinkOptions opts;
    opts.store_logs = true;
    SqliteMetricsSink loud(store.db_path(), id, opts);
    loud.log("stored line");
    loud.flush();
    ASSERT_EQ(store.logs_tail(id, 10).size(), 1u);
  }
  EXPECT_EQ(store.logs_tail(id, 10).at(0).line, "stored line");
}

TEST(SqliteMetricsSink, ClearErrorsForMissingDatabaseOrJob) {
  TempDir dir;
  std::string missing = dir.str("nope.db");
  EXPECT_THROW(make_job_sink(missing, 1), std::runtime_error);
  EXPECT_FALSE(std::filesystem::exists(missing));  // never creates a stray database
  JobStore store(dir.str("jobs.db"));
  try {
    make_job_sink(store.db_path(), 77);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("job 77 not found"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_job_sink(store.db_path(), 0), std::runtime_error);
  int64_t id = make_job(store);
  auto sink = make_job_sink(store.db_path(), id);
  sink->metric("x", 1, 2.0);
  sink->flush();
  EXPECT_EQ(store.metrics(id, "x").size(), 1u);
}

}  // namespace
}  // namespace ktl::jobs
