#include "jobs/job_store.h"

#include <filesystem>

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "jobs/sqlite_checksum_upgrade.h"

namespace ktl::jobs {

namespace {

constexpr const char* kJobColumns =
    "id, kind, name, spec, status, progress_step, progress_total, created_at, started_at, "
    "finished_at, error, output_dir, pid, resume_count, resume_from";

Job job_from_row(const Statement& st) {
  Job j;
  j.id = st.col_int(0);
  j.kind = parse_job_kind(st.col_text(1)).value_or(JobKind::kTrain);
  j.name = st.col_text(2);
  j.spec_json = st.col_text(3);
  j.status = parse_job_status(st.col_text(4)).value_or(JobStatus::kFailed);
  j.progress_step = st.col_int(5);
  j.progress_total = st.col_int(6);
  j.created_at = st.col_double(7);
  j.started_at = st.col_double(8);
  j.finished_at = st.col_double(9);
  j.error = st.col_text(10);
  j.output_dir = st.col_text(11);
  j.pid = st.col_int(12);
  j.resume_count = st.col_int(13);
  j.resume_from = st.col_text(14);
  return j;
}

double value_or_nan(const Statement& st, int col) {
  return st.col_is_null(col) ? std::numeric_limits<double>::quiet_NaN() : st.col_double(col);
}

std::string status_event(JobStatus from, JobStatus to, const std::string& error) {
  nlohmann::json ev = {{"from", to_string(from)}, {"to", to_string(to)}};
  if (!error.empty()) ev["error"] = error;
  return ev.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

namespace {

// A database from before page checksums gets them once, before the store's connection opens;
// failing that (e.g. a full disk) it keeps working without them, and the next start retries.
const std::string& with_page_checksums(const std::string& path) {
  try {
    if (add_page_checksums(path)) spdlog::info("{}: added page checksums", path);
  } catch (const std::exception& e) {
    spdlog::warn("{}: page checksums not added: {}", path, e.what());
  }
  return path;
}

}  // namespace

JobStore::JobStore(const std::string& db_path)
    : db_path_(db_path), db_(with_page_checksums(db_path)) {
  migrate(db_, job_db_migrations());
}

Job JobStore::read_job_locked(int64_t id, bool* found) {
  Statement& st = db_.cached(std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?1");
  st.bind(1, id);
  Job j;
  *found = st.step();
  if (*found) j = job_from_row(st);
  st.reset();
  return j;
}

Job JobStore::create_job(const NewJob& nj) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_);
  double now = unix_now();
  db_.cached("INSERT INTO jobs(kind, name, spec, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
      .bind_all(to_string(nj.kind), nj.name, nj.spec_json, to_string(JobStatus::kQueued), now)
      .run();
  int64_t id = db_.last_insert_rowid();
  if (nj.output_dir_for)
    db_.cached("UPDATE jobs SET output_dir = ?2 WHERE id = ?1")
        .bind_all(id, nj.output_dir_for(id))
        .run();
  for (const auto& [k, v] : nj.params)
    db_.cached("INSERT INTO params(job_id, key, value) VALUES (?1, ?2, ?3)")
        .bind_all(id, k, v)
        .run();
  nlohmann::json ev = {{"from", nullptr}, {"to", "queued"}};
  db_insert_event(db_, id, "status", ev.dump(), now);
  bool found = false;
  Job j = read_job_locked(id, &found);
  tx.commit();
  return j;
}

std::optional<Job> JobStore::get_job(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  bool found = false;
  Job j = read_job_locked(id, &found);
  if (!found) return std::nullopt;
  return j;
}

Job JobStore::require_job(int64_t id) {
  auto j = get_job(id);
  if (!j) throw JobNotFound(id);
  return *j;
}

std::vector<Job> JobStore::list_jobs(std::optional<JobStatus> status, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string sql = std::string("SELECT ") + kJobColumns + " FROM jobs";
  if (status) sql += " WHERE status = ?2";
  sql += " ORDER BY id DESC LIMIT ?1";
  Statement& st = db_.cached(sql);
  st.bind(1, limit);
  if (status) st.bind(2, to_string(*status));
  std::vector<Job> out;
  while (st.step()) out.push_back(job_from_row(st));
  st.reset();
  return out;
}

std::optional<Job> JobStore::next_queued() {
  std::lock_guard<std::mutex> lock(mu_);
  Statement& st = db_.cached(std::string("SELECT ") + kJobColumns +
                             " FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1");
  std::optional<Job> out;
  if (st.step()) out = job_from_row(st);
  st.reset();
  return out;
}

Job JobStore::update_status(int64_t id, JobStatus to, const StatusChange& change) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_);
  bool found = false;
  Job j = read_job_locked(id, &found);
  if (!found) throw JobNotFound(id);
  if (!job_status_transition_allowed(j.status, to))
    throw JobStateError("job " + std::to_string(id) + " is " + to_string(j.status) +
                        "; it cannot become " + to_string(to));
  double now = unix_now();
  JobStatus from = j.status;
  j.status = to;
  if (to == JobStatus::kRunning) {
    j.started_at = now;
    j.finished_at = 0;
    j.error.clear();
  } else if (to == JobStatus::kQueued) {
    j.started_at = j.finished_at = 0;
    j.error.clear();
    j.resume_count += 1;
    j.pid = 0;
  } else {
    j.finished_at = now;
    j.pid = 0;
  }
  if (change.error) j.error = *change.error;
  if (change.pid) j.pid = *change.pid;
  if (change.resume_from) j.resume_from = *change.resume_from;
  db_.cached(
         "UPDATE jobs SET status = ?2, started_at = ?3, finished_at = ?4, error = ?5, pid = ?6, "
         "resume_count = ?7, resume_from = ?8 WHERE id = ?1")
      .bind_all(id, to_string(to), j.started_at, j.finished_at, j.error, j.pid, j.resume_count,
                j.resume_from)
      .run();
  db_insert_event(db_, id, "status", status_event(from, to, j.error), now);
  tx.commit();
  return j;
}

void JobStore::set_pid(int64_t id, int64_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  db_.cached("UPDATE jobs SET pid = ?2 WHERE id = ?1").bind_all(id, pid).run();
}

std::vector<Job> JobStore::mark_running_interrupted() {
  std::vector<Job> out;
  for (const Job& j : list_jobs(JobStatus::kRunning, std::numeric_limits<int>::max())) {
    try {
      // Keep the pid: the child may still be writing its last checkpoint (resume waits).
      out.push_back(
          update_status(j.id, JobStatus::kInterrupted,
                        {std::string("the server stopped while this job ran"), j.pid, {}}));
    } catch (const JobStateError&) {
      // Changed meanwhile (another thread finished it): nothing to mark.
    }
  }
  return out;
}

std::map<std::string, std::string> JobStore::params(int64_t job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement& st = db_.cached("SELECT key, value FROM params WHERE job_id = ?1 ORDER BY key");
  st.bind(1, job_id);
  std::map<std::string, std::string> out;
  while (st.step()) out[st.col_text(0)] = st.col_text(1);
  st.reset();
  return out;
}

void JobStore::add_metrics(int64_t job_id, const std::vector<MetricPoint>& points) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_);
  db_insert_metrics(db_, job_id, points);
  tx.commit();
}

void JobStore::add_sample(int64_t job_id, const SampleRecord& s) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_);
  db_insert_sample(db_, job_id, s);
  tx.commit();
}

void JobStore::add_checkpoint(int64_t job_id, const CheckpointRecord& c) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_);
  db_insert_checkpoint(db_, job_id, c);
  tx.commit();
}

void JobStore::set_progress(int64_t job_id, int64_t step, int64_t total) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_);
  db_update_progress(db_, job_id, step, total);
  tx.commit();
}

void JobStore::append_logs(int64_t job_id, const std::vector<std::string>& lines) {
  if (lines.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  Transaction tx(db_);
  db_insert_logs(db_, job_id, lines);
  tx.commit();
}

int64_t JobStore::add_event(int64_t job_id, const std::string& type,
                            const std::string& payload_json) {
  std::lock_guard<std::mutex> lock(mu_);
  return db_insert_event(db_, job_id, type, payload_json);
}

std::vector<MetricPoint> JobStore::metrics(int64_t job_id, const std::string& key,
                                           int64_t since_step, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string sql = "SELECT key, step, value, time FROM metrics WHERE job_id = ?1 AND step >= ?2";
  if (!key.empty()) sql += " AND key = ?4";
  sql += " ORDER BY key, step, rowid LIMIT ?3";
  Statement& st = db_.cached(sql);
  st.bind_all(job_id, since_step, limit);
  if (!key.empty()) st.bind(4, key);
  std::vector<MetricPoint> out;
  while (st.step())
    out.push_back({st.col_text(0), st.col_int(1), value_or_nan(st, 2), st.col_double(3)});
  st.reset();
  return out;
}

std::vector<MetricPoint> JobStore::latest_metrics(int64_t job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement& st = db_.cached(
      "SELECT key, step, value, time FROM latest_metrics WHERE job_id = ?1 ORDER BY key");
  st.bind(1, job_id);
  std::vector<MetricPoint> out;
  while (st.step())
    out.push_back({st.col_text(0), st.col_int(1), value_or_nan(st, 2), st.col_double(3)});
  st.reset();
  return out;
}

std::vector<SampleRecord> JobStore::samples(int64_t job_id, int64_t since_step, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement& st = db_.cached(
      "SELECT id, step, prompt, text, kind, time FROM samples WHERE job_id = ?1 AND step >= ?2 "
      "ORDER BY step, id LIMIT ?3");
  st.bind_all(job_id, since_step, limit);
  std::vector<SampleRecord> out;
  while (st.step())
    out.push_back({st.col_int(0), st.col_int(1), st.col_text(2), st.col_text(3), st.col_text(4),
                   st.col_double(5)});
  st.reset();
  return out;
}

std::vector<CheckpointRecord> JobStore::checkpoints(int64_t job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement& st = db_.cached(
      "SELECT step, path, metrics, time FROM checkpoints WHERE job_id = ?1 ORDER BY step, id");
  st.bind(1, job_id);
  std::vector<CheckpointRecord> out;
  while (st.step()) {
    CheckpointRecord c{st.col_int(0), st.col_text(1), {}, st.col_double(3)};
    auto m = nlohmann::json::parse(st.col_text(2), nullptr, false);
    if (m.is_object())
      for (auto it = m.begin(); it != m.end(); ++it)
        c.metrics[it.key()] =
            it->is_number() ? it->get<double>() : std::numeric_limits<double>::quiet_NaN();
    out.push_back(std::move(c));
  }
  st.reset();
  return out;
}

int JobStore::prune_missing_checkpoints(int64_t job_id) {
  int removed = 0;
  for (const CheckpointRecord& c : checkpoints(job_id)) {
    std::error_code ec;
    if (std::filesystem::exists(c.path, ec) || ec) continue;  // unsure: keep it
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_);
    db_delete_checkpoint(db_, job_id, c);
    tx.commit();
    ++removed;
  }
  return removed;
}

std::vector<EventRecord> JobStore::events_since(int64_t job_id, int64_t after_id, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string sql = "SELECT id, job_id, type, payload, time FROM events WHERE id > ?1";
  if (job_id != 0) sql += " AND job_id = ?3";
  sql += " ORDER BY id LIMIT ?2";
  Statement& st = db_.cached(sql);
  st.bind_all(after_id, limit);
  if (job_id != 0) st.bind(3, job_id);
  std::vector<EventRecord> out;
  while (st.step())
    out.push_back({st.col_int(0), st.col_int(1), st.col_text(2), st.col_text(3), st.col_double(4)});
  st.reset();
  return out;
}

std::vector<LogLine> JobStore::logs_tail(int64_t job_id, int n) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement& st = db_.cached(
      "SELECT id, line, time FROM (SELECT id, line, time FROM logs WHERE job_id = ?1 "
      "ORDER BY id DESC LIMIT ?2) ORDER BY id");
  st.bind_all(job_id, n);
  std::vector<LogLine> out;
  while (st.step()) out.push_back({st.col_int(0), st.col_text(1), st.col_double(2)});
  st.reset();
  return out;
}

std::vector<LogLine> JobStore::logs_since(int64_t job_id, int64_t after_id, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement& st = db_.cached(
      "SELECT id, line, time FROM logs WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
  st.bind_all(job_id, after_id, limit);
  std::vector<LogLine> out;
  while (st.step()) out.push_back({st.col_int(0), st.col_text(1), st.col_double(2)});
  st.reset();
  return out;
}

}  // namespace ktl::jobs
