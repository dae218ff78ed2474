#include "jobs/job_db.h"

#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

namespace ktl::jobs {

namespace {

// Append new steps here; never edit one that has shipped. (A function-local static: safe to
// use from other static initialisers.)
const std::vector<Migration>& migrations_list() {
  static const std::vector<Migration> kMigrations = {
      {1, R"sql(
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  spec TEXT NOT NULL,
  status TEXT NOT NULL,
  progress_step INTEGER NOT NULL DEFAULT 0,
  progress_total INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  started_at REAL NOT NULL DEFAULT 0,
  finished_at REAL NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  output_dir TEXT NOT NULL DEFAULT '',
  pid INTEGER NOT NULL DEFAULT 0,
  resume_count INTEGER NOT NULL DEFAULT 0,
  resume_from TEXT NOT NULL DEFAULT '');
CREATE INDEX jobs_status ON jobs(status, id);
CREATE TABLE params (
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (job_id, key));
CREATE TABLE metrics (
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  step INTEGER NOT NULL,
  value REAL,
  time REAL NOT NULL);
CREATE INDEX metrics_job_key_step ON metrics(job_id, key, step);
CREATE TABLE latest_metrics (
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  step INTEGER NOT NULL,
  value REAL,
  time REAL NOT NULL,
  PRIMARY KEY (job_id, key));
CREATE TABLE samples (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  prompt TEXT NOT NULL,
  text TEXT NOT NULL,
  kind TEXT NOT NULL,
  time REAL NOT NULL);
CREATE INDEX samples_job_step ON samples(job_id, step);
CREATE TABLE checkpoints (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  path TEXT NOT NULL,
  metrics TEXT NOT NULL DEFAULT '{}',
  time REAL NOT NULL);
CREATE INDEX checkpoints_job_step ON checkpoints(job_id, step);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  time REAL NOT NULL);
CREATE INDEX events_job_id ON events(job_id, id);
CREATE TABLE logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  line TEXT NOT NULL,
  time REAL NOT NULL);
CREATE INDEX logs_job_id ON logs(job_id, id);
)sql"},
      // One row per (job, key, step) and per (job, checkpoint path): a resumed run replays the
      // steps after its checkpoint and reports them again; the newest report wins.
      {2, R"sql(
DELETE FROM metrics WHERE rowid NOT IN (
  SELECT MAX(rowid) FROM metrics GROUP BY job_id, key, step);
DROP INDEX metrics_job_key_step;
CREATE UNIQUE INDEX metrics_job_key_step ON metrics(job_id, key, step);
DELETE FROM checkpoints WHERE id NOT IN (
  SELECT MAX(id) FROM checkpoints GROUP BY job_id, path);
CREATE UNIQUE INDEX checkpoints_job_path ON checkpoints(job_id, path);
)sql"},
      // Samples too: a run resumed from an older checkpoint than its last sample regenerates
      // that sample; it replaces the first instead of showing twice.
      {3, R"sql(
DELETE FROM samples WHERE id NOT IN (
  SELECT MAX(id) FROM samples GROUP BY job_id, step, kind, prompt);
CREATE UNIQUE INDEX samples_job_step_kind_prompt ON samples(job_id, step, kind, prompt);
)sql"},
  };
  return kMigrations;
}

double or_now(double t) {
  return t > 0 ? t : unix_now();
}

// SQLite has no NaN: it becomes NULL. JSON has none either: null.
nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

// Replaces invalid UTF-8 rather than throw: a sample from an early model may be any bytes.
std::string dump_safe(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

const std::vector<Migration>& job_db_migrations() {
  return migrations_list();
}
int job_db_schema_version() {
  return migrations_list().back().version;
}

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

void migrate(SqliteDb& db, const std::vector<Migration>& migrations) {
  int latest = migrations.empty() ? 0 : migrations.back().version;
  for (const Migration& m : migrations) {
    Transaction tx(db);  // re-read inside the lock: another process may have migrated
    int current = db.user_version();
    if (current > latest)
      throw std::runtime_error("database " + db.path() + " has schema version " +
                               std::to_string(current) + ", newer than this ktl knows (" +
                               std::to_string(latest) + "); upgrade ktl");
    if (current >= m.version) continue;
    db.exec(m.sql);
    db.set_user_version(m.version);
    tx.commit();
  }
}

void require_job_db_schema(SqliteDb& db) {
  int v = db.user_version();
  if (v != job_db_schema_version())
    throw std::runtime_error("job database " + db.path() + " has schema version " +
                             std::to_string(v) + ", expected " +
                             std::to_string(job_db_schema_version()) +
                             " (start `ktl serve` once to create or migrate it)");
}

int64_t db_insert_event(SqliteDb& db, int64_t job_id, const std::string& type,
                        const std::string& payload_json, double time) {
  db.cached("INSERT INTO events(job_id, type, payload, time) VALUES (?1, ?2, ?3, ?4)")
      .bind_all(job_id, type, payload_json, or_now(time))
      .run();
  return db.last_insert_rowid();
}

void db_insert_metrics(SqliteDb& db, int64_t job_id, const std::vector<MetricPoint>& points) {
  for (const MetricPoint& p : points) {
    double t = or_now(p.time);
    auto bind_value = [&](Statement& st, int idx) {
      if (std::isnan(p.value))
        st.bind_null(idx);
      else
        st.bind(idx, p.value);
    };
    Statement& ins = db.cached(
        "INSERT INTO metrics(job_id, key, step, value, time) VALUES (?1, ?2, ?3, ?4, ?5) "
        "ON CONFLICT(job_id, key, step) DO UPDATE SET value = excluded.value, "
        "time = excluded.time");
    ins.bind_all(job_id, p.key, p.step);
    bind_value(ins, 4);
    ins.bind(5, t).run();
    Statement& up = db.cached(
        "INSERT INTO latest_metrics(job_id, key, step, value, time) VALUES (?1, ?2, ?3, ?4, ?5) "
        "ON CONFLICT(job_id, key) DO UPDATE SET step = excluded.step, value = excluded.value, "
        "time = excluded.time WHERE excluded.step >= latest_metrics.step");
    up.bind_all(job_id, p.key, p.step);
    bind_value(up, 4);
    up.bind(5, t).run();
    nlohmann::json ev = {{"key", p.key}, {"step", p.step}, {"value", number_or_null(p.value)}};
    db_insert_event(db, job_id, "metric", dump_safe(ev), t);
  }
}

void db_insert_sample(SqliteDb& db, int64_t job_id, const SampleRecord& s) {
  double t = or_now(s.time);
  db.cached(
        "INSERT INTO samples(job_id, step, prompt, text, kind, time) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
        "ON CONFLICT(job_id, step, kind, prompt) DO UPDATE SET text = excluded.text, "
        "time = excluded.time")
      .bind_all(job_id, s.step, s.prompt, s.text, s.kind, t)
      .run();
  nlohmann::json ev = {{"step", s.step}, {"prompt", s.prompt}, {"text", s.text}, {"kind", s.kind}};
  db_insert_event(db, job_id, "sample", dump_safe(ev), t);
}

void db_insert_checkpoint(SqliteDb& db, int64_t job_id, const CheckpointRecord& c) {
  double t = or_now(c.time);
  nlohmann::json m = nlohmann::json::object();
  for (const auto& [k, v] : c.metrics) m[k] = number_or_null(v);
  db.cached(
        "INSERT INTO checkpoints(job_id, step, path, metrics, time) VALUES (?1, ?2, ?3, ?4, ?5) "
        "ON CONFLICT(job_id, path) DO UPDATE SET step = excluded.step, "
        "metrics = excluded.metrics, time = excluded.time")
      .bind_all(job_id, c.step, c.path, dump_safe(m), t)
      .run();
  nlohmann::json ev = {{"step", c.step}, {"path", c.path}, {"metrics", m}};
  db_insert_event(db, job_id, "checkpoint", dump_safe(ev), t);
}

void db_delete_checkpoint(SqliteDb& db, int64_t job_id, const CheckpointRecord& c) {
  double t = or_now(c.time);
  db.cached("DELETE FROM checkpoints WHERE job_id = ?1 AND path = ?2")
      .bind_all(job_id, c.path)
      .run();
  nlohmann::json ev = {{"step", c.step}, {"path", c.path}};
  db_insert_event(db, job_id, "checkpoint_deleted", dump_safe(ev), t);
}

void db_update_progress(SqliteDb& db, int64_t job_id, int64_t step, int64_t total) {
  db.cached("UPDATE jobs SET progress_step = ?2, progress_total = ?3 WHERE id = ?1")
      .bind_all(job_id, step, total)
      .run();
  nlohmann::json ev = {{"step", step}, {"total", total}};
  db_insert_event(db, job_id, "progress", ev.dump());
}

void db_insert_logs(SqliteDb& db, int64_t job_id, const std::vector<std::string>& lines,
                    double time) {
  double t = or_now(time);
  for (const std::string& line : lines)
    db.cached("INSERT INTO logs(job_id, line, time) VALUES (?1, ?2, ?3)")
        .bind_all(job_id, line, t)
        .run();
}

bool db_job_exists(SqliteDb& db, int64_t job_id) {
  Statement& st = db.cached("SELECT 1 FROM jobs WHERE id = ?1");
  st.bind(1, job_id);
  bool found = st.step();
  st.reset();
  return found;
}

}  // namespace ktl::jobs
