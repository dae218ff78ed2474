#include "jobs/job_store.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>

#include "tests/support/job_test_util.h"

namespace ktl::jobs {
namespace {

using testing::TempDir;

NewJob train_job(const std::string& name = "t") {
  NewJob j;
  j.kind = JobKind::kTrain;
  j.name = name;
  j.spec_json = R"({"kind":"train","name":")" + name + R"(","options":{}})";
  j.params = {{"max_steps", "10"}};
  return j;
}

int64_t count_rows(SqliteDb& db, const std::string& table) {
  Statement st = db.prepare("SELECT COUNT(*) FROM " + table);
  st.step();
  return st.col_int(0);
}

TEST(JobStatus, TransitionsFollowTheDocumentedTable) {
  using S = JobStatus;
  const std::set<std::pair<S, S>> allowed = {
      {S::kQueued, S::kRunning},     {S::kQueued, S::kCancelled},  {S::kRunning, S::kSucceeded},
      {S::kRunning, S::kFailed},     {S::kRunning, S::kCancelled}, {S::kRunning, S::kInterrupted},
      {S::kInterrupted, S::kQueued}, {S::kFailed, S::kQueued},     {S::kCancelled, S::kQueued}};
  const S all[] = {S::kQueued, S::kRunning,   S::kSucceeded,
                   S::kFailed, S::kCancelled, S::kInterrupted};
  for (S from : all)
    for (S to : all)
      EXPECT_EQ(job_status_transition_allowed(from, to), allowed.count({from, to}) == 1)
          << to_string(from) << " -> " << to_string(to);
  for (S s : all) EXPECT_EQ(parse_job_status(to_string(s)), s);
  EXPECT_FALSE(parse_job_status("done").has_value());
  EXPECT_EQ(parse_job_kind("train-tokenizer"), JobKind::kTrainTokenizer);
  EXPECT_FALSE(parse_job_kind("Train").has_value());
}

TEST(JobStore, FreshDatabaseIsMigratedAndReopenKeepsData) {
  TempDir dir;
  std::string db = dir.str("jobs.db");
  int64_t id;
  {
    JobStore store(db);
    id = store.create_job(train_job("first")).id;
  }
  JobStore again(db);
  SqliteDb raw(db);
  EXPECT_EQ(raw.user_version(), job_db_schema_version());
  auto j = again.get_job(id);
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ(j->name, "first");
  EXPECT_EQ(j->status, JobStatus::kQueued);
  EXPECT_GT(j->created_at, 1.6e9);
  EXPECT_EQ(again.params(id).at("max_steps"), "10");
  EXPECT_EQ(count_rows(raw, "jobs"), 1);
}

TEST(JobStore, RefusesADatabaseFromANewerVersion) {
  TempDir dir;
  std::string db = dir.str("jobs.db");
  {
    SqliteDb raw(db);
    raw.set_user_version(job_db_schema_version() + 1);
  }
  try {
    JobStore store(db);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(JobStore, FailedMigrationStepLeavesThePreviousVersionIntact) {
  TempDir dir;
  SqliteDb db(dir.str("m.db"));
  std::vector<Migration> steps = {
      {1, "CREATE TABLE a(x INTEGER)"},
      {2, "CREATE TABLE b(y INTEGER); INSERT INTO nowhere VALUES (1)"},
  };
  EXPECT_THROW(migrate(db, steps), SqliteError);
  EXPECT_EQ(db.user_version(), 1);
  Statement st = db.prepare("SELECT COUNT(*) FROM sqlite_master WHERE name = 'b'");
  st.step();
  EXPECT_EQ(st.col_int(0), 0);  // step 2 rolled back as a whole
  steps[1].sql = "CREATE TABLE b(y INTEGER)";
  migrate(db, steps);
  EXPECT_EQ(db.user_version(), 2);
}

TEST(JobStore, MigrationKeepsTheNewestOfDuplicateMetricsAndCheckpoints) {
  TempDir dir;
  {
    // A version-1 database written before (job, key, step) was unique.
    SqliteDb v1(dir.str("jobs.db"));
    migrate(v1, {job_db_migrations().at(0)});
    v1.exec(
        "INSERT INTO jobs(id, kind, name, spec, status, created_at) "
        "VALUES (1, 'train', 't', '{}', 'failed', 0);"
        "INSERT INTO metrics(job_id, key, step, value, time) VALUES "
        "(1, 'train/loss', 5, 3.0, 1), (1, 'train/loss', 6, 2.9, 1), "
        "(1, 'train/loss', 6, 2.5, 2), (1, 'val/loss', 6, 4.0, 2);"
        "INSERT INTO checkpoints(job_id, step, path, time) VALUES "
        "(1, 5, '/ck/checkpoint-5', 1), (1, 5, '/ck/checkpoint-5', 2);");
  }
  JobStore store(dir.str("jobs.db"));
  auto loss = store.metrics(1, "train/loss");
  ASSERT_EQ(loss.size(), 2u);
  EXPECT_EQ(loss[1].step, 6);
  EXPECT_DOUBLE_EQ(loss[1].value, 2.5);
  EXPECT_EQ(store.metrics(1, "val/loss").size(), 1u);
  ASSERT_EQ(store.checkpoints(1).size(), 1u);
  EXPECT_DOUBLE_EQ(store.checkpoints(1)[0].time, 2);
  store.add_metrics(1, {{"train/loss", 6, 2.0, 0}});
  EXPECT_EQ(store.metrics(1, "train/loss").size(), 2u);
}

TEST(JobStore, StatusTransitionsSetTimesAndEventsAndRejectTheRest) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  Job j = store.create_job(train_job());
  Job r = store.update_status(j.id, JobStatus::kRunning, {std::nullopt, int64_t{4242}, {}});
  EXPECT_EQ(r.status, JobStatus::kRunning);
  EXPECT_GT(r.started_at, 0);
  EXPECT_EQ(r.pid, 4242);
  Job f = store.update_status(j.id, JobStatus::kFailed, {std::string("boom"), {}, {}});
  EXPECT_GT(f.finished_at, 0);
  EXPECT_EQ(f.pid, 0);
  EXPECT_EQ(store.require_job(j.id).error, "boom");

  size_t events_before = store.events_since(j.id, 0).size();
  EXPECT_THROW(store.update_status(j.id, JobStatus::kSucceeded), JobStateError);
  EXPECT_THROW(store.update_status(j.id, JobStatus::kRunning), JobStateError);
  EXPECT_THROW(store.update_status(999, JobStatus::kRunning), JobNotFound);
  EXPECT_EQ(store.require_job(j.id).status, JobStatus::kFailed);
  EXPECT_EQ(store.events_since(j.id, 0).size(), events_before);  // refused: nothing written

  Job q = store.update_status(j.id, JobStatus::kQueued, {std::nullopt, {}, std::string("/ck/3")});
  EXPECT_EQ(q.resume_count, 1);
  EXPECT_EQ(q.resume_from, "/ck/3");
  EXPECT_EQ(q.error, "");
  EXPECT_EQ(q.started_at, 0);
  EXPECT_EQ(q.finished_at, 0);

  auto events = store.events_since(j.id, 0);
  ASSERT_EQ(events.size(), 4u);  // created, running, failed, queued
  for (const auto& e : events) EXPECT_EQ(e.type, "status");
  EXPECT_NE(events[2].payload_json.find("\"to\":\"failed\""), std::string::npos);
  EXPECT_NE(events[2].payload_json.find("boom"), std::string::npos);
  EXPECT_LT(events[0].id, events[3].id);
  EXPECT_EQ(store.events_since(j.id, events[1].id).size(), 2u);
}

TEST(JobStore, MetricsBatchAndSeriesQuery) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  int64_t a = store.create_job(train_job("a")).id;
  int64_t b = store.create_job(train_job("b")).id;
  std::vector<MetricPoint> pts;
  for (int s = 100; s >= 1; --s) {  // out of order on purpose
    pts.push_back({"train/loss", s, 10.0 / s, 0});
    if (s % 10 == 0) pts.push_back({"val/loss", s, 20.0 / s, 0});
  }
  store.add_metrics(a, pts);
  store.add_metrics(b, {{"train/loss", 1, 99.0, 0}});
  store.add_metrics(a, {{"train/loss", 50, 1.0, 0}});  // older step: latest stays at 100

  auto series = store.metrics(a, "train/loss", 91);
  ASSERT_EQ(series.size(), 10u);
  for (size_t i = 0; i < series.size(); ++i) {
    EXPECT_EQ(series[i].step, 91 + static_cast<int64_t>(i));
    EXPECT_DOUBLE_EQ(series[i].value, 10.0 / series[i].step);
  }
  EXPECT_EQ(store.metrics(a, "val/loss").size(), 10u);
  // Every key; step 50 written twice is one row holding the newer value.
  EXPECT_EQ(store.metrics(a).size(), 110u);
  EXPECT_DOUBLE_EQ(store.metrics(a, "train/loss", 50, 1).at(0).value, 1.0);
  EXPECT_EQ(store.metrics(a, "train/loss", INT64_MIN, 5).size(), 5u);

  auto latest = store.latest_metrics(a);
  ASSERT_EQ(latest.size(), 2u);
  EXPECT_EQ(latest[0].key, "train/loss");
  EXPECT_EQ(latest[0].step, 100);
  EXPECT_DOUBLE_EQ(latest[0].value, 0.1);
  EXPECT_EQ(store.latest_metrics(b).size(), 1u);

  store.add_metrics(a, {{"train/loss", 101, std::numeric_limits<double>::quiet_NaN(), 0}});
  EXPECT_TRUE(std::isnan(store.metrics(a, "train/loss", 101).at(0).value));
  // One "metric" event per point, so a server can stream them.
  size_t metric_events = 0;
  for (const auto& e : store.events_since(a, 0, 100000)) metric_events += e.type == "metric";
  EXPECT_EQ(metric_events, pts.size() + 2);
}

TEST(JobStore, RunningJobsBecomeInterruptedAtStartup) {
  TempDir dir;
  std::string db = dir.str("jobs.db");
  int64_t q, r1, r2, done;
  {
    JobStore store(db);
    q = store.create_job(train_job("queued")).id;
    r1 = store.create_job(train_job("r1")).id;
    r2 = store.create_job(train_job("r2")).id;
    done = store.create_job(train_job("done")).id;
    for (int64_t id : {r1, r2, done}) store.update_status(id, JobStatus::kRunning);
    store.update_status(done, JobStatus::kSucceeded);
    store.add_metrics(r1, {{"train/loss", 7, 2.5, 0}});
  }  // "crash": the store goes away with jobs still running
  JobStore store(db);
  auto marked = store.mark_running_interrupted();
  ASSERT_EQ(marked.size(), 2u);
  EXPECT_EQ(store.require_job(r1).status, JobStatus::kInterrupted);
  EXPECT_EQ(store.require_job(r2).status, JobStatus::kInterrupted);
  EXPECT_EQ(store.require_job(q).status, JobStatus::kQueued);
  EXPECT_EQ(store.require_job(done).status, JobStatus::kSucceeded);
  EXPECT_EQ(store.metrics(r1, "train/loss").size(), 1u);  // what it reported survives
  EXPECT_EQ(store.events_since(r1, 0).back().type, "status");
  EXPECT_TRUE(store.mark_running_interrupted().empty());
}

TEST(JobStore, NothingHalfCreatedWhenCreationFails) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  NewJob bad = train_job("bad");
  bad.output_dir_for = [](int64_t) -> std::string { throw std::runtime_error("no disk"); };
  EXPECT_THROW(store.create_job(bad), std::runtime_error);
  EXPECT_TRUE(store.list_jobs().empty());
  EXPECT_TRUE(store.events_since(0, 0).empty());
  SqliteDb raw(dir.str("jobs.db"));
  EXPECT_EQ(count_rows(raw, "params"), 0);
  // The store still works afterwards.
  NewJob good = train_job("good");
  good.output_dir_for = [](int64_t id) { return "/out/" + std::to_string(id); };
  Job j = store.create_job(good);
  EXPECT_EQ(j.output_dir, "/out/" + std::to_string(j.id));
}

TEST(JobStore, ListFiltersByStatusNewestFirst) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  int64_t a = store.create_job(train_job("a")).id;
  int64_t b = store.create_job(train_job("b")).id;
  int64_t c = store.create_job(train_job("c")).id;
  store.update_status(b, JobStatus::kCancelled);
  auto all = store.list_jobs();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, c);
  auto queued = store.list_jobs(JobStatus::kQueued);
  ASSERT_EQ(queued.size(), 2u);
  EXPECT_EQ(queued[1].id, a);
  EXPECT_EQ(store.next_queued()->id, a);
  EXPECT_EQ(store.list_jobs(JobStatus::kCancelled).at(0).id, b);
}

TEST(JobStore, SamplesCheckpointsAndLogs) {
  TempDir dir;
  JobStore store(dir.str("jobs.db"));
  int64_t id = store.create_job(train_job()).id;
  store.add_sample(id, {0, 20, "오늘 날씨가", "맑고 좋습니다", "greedy", 0});
  store.add_sample(id, {0, 10, "옛날 옛적에", "호랑이가", "sampled", 0});
  auto samples = store.samples(id);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].step, 10);
  EXPECT_EQ(samples[1].text, "맑고 좋습니다");
  EXPECT_EQ(store.samples(id, 15).size(), 1u);

  store.add_checkpoint(id, {200, "/ck/checkpoint-200", {{"val/loss", 3.5}}, 0});
  store.add_checkpoint(id, {100, "/ck/checkpoint-100", {}, 0});
  auto cps = store.checkpoints(id);
  ASSERT_EQ(cps.size(), 2u);
  EXPECT_EQ(cps[0].step, 100);
  EXPECT_DOUBLE_EQ(cps[1].metrics.at("val/loss"), 3.5);

  std::vector<std::string> lines;
  for (int i = 0; i < 10; ++i) lines.push_back("line " + std::to_string(i));
  store.append_logs(id, lines);
  auto tail = store.logs_tail(id, 3);
  ASSERT_EQ(tail.size(), 3u);
  EXPECT_EQ(tail[0].line, "line 7");
  EXPECT_EQ(tail[2].line, "line 9");
  auto since = store.logs_since(id, tail[0].id);
  ASSERT_EQ(since.size(), 2u);
  EXPECT_EQ(since[0].line, "line 8");

  store.set_progress(id, 30, 100);
  Job j = store.require_job(id);
  EXPECT_EQ(j.progress_step, 30);
  EXPECT_EQ(j.progress_total, 100);
}

}  // namespace
}  // namespace ktl::jobs
