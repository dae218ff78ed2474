// The job database's schema (versioned with PRAGMA user_version) and the row writers that both
// the server (JobStore) and a training child (SqliteMetricsSink) use on their own connections.
// Writers must run inside a Transaction; they are not thread-safe (neither is SqliteDb).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "jobs/sqlite_db.h"

namespace ktl::jobs {

// One schema step: applied once, in order, inside one transaction with its version bump.
struct Migration {
  int version;      // user_version after it ran (1, 2, ...)
  std::string sql;  // statements separated by ';'
};

const std::vector<Migration>& job_db_migrations();
int job_db_schema_version();  // version after all migrations

// Brings the database to the last migration's version, each step atomically (a failing step
// leaves the previous version intact). Throws when the file is newer than `migrations` know.
void migrate(SqliteDb& db, const std::vector<Migration>& migrations);
// Throws a clear error unless the database is at exactly job_db_schema_version() (children
// use this: they never migrate a database the server owns).
void require_job_db_schema(SqliteDb& db);

double unix_now();  // seconds since the epoch, sub-second precision

struct MetricPoint {
  std::string key;
  int64_t step = 0;
  double value = 0;  // NaN is stored as NULL and read back as NaN
  double time = 0;   // 0 = now when written
};

struct SampleRecord {
  int64_t id = 0;
  int64_t step = 0;
  std::string prompt;
  std::string text;
  std::string kind;  // "greedy" or "sampled"
  double time = 0;
};

struct CheckpointRecord {
  int64_t step = 0;
  std::string path;
  std::map<std::string, double> metrics;
  double time = 0;
};

struct EventRecord {
  int64_t id = 0;
  int64_t job_id = 0;
  std::string type;          // status, metric, sample, checkpoint, progress
  std::string payload_json;  // object
  double time = 0;
};

struct LogLine {
  int64_t id = 0;
  std::string line;
  double time = 0;
};

// Row writers (inside a Transaction). Each also writes the matching event rows so a server can
// stream them; metrics update latest_metrics when their step is not older than the stored one.
// A metric (job, key, step) or checkpoint (job, path) written again replaces the stored row
// (a resumed run replays the steps after its checkpoint).
void db_insert_metrics(SqliteDb& db, int64_t job_id, const std::vector<MetricPoint>& points);
void db_insert_sample(SqliteDb& db, int64_t job_id, const SampleRecord& s);
void db_insert_checkpoint(SqliteDb& db, int64_t job_id, const CheckpointRecord& c);
// The trainer deleted checkpoint `c.path` (rotation): drops its row, writes a
// "checkpoint_deleted" event.
void db_delete_checkpoint(SqliteDb& db, int64_t job_id, const CheckpointRecord& c);
void db_update_progress(SqliteDb& db, int64_t job_id, int64_t step, int64_t total);
void db_insert_logs(SqliteDb& db, int64_t job_id, const std::vector<std::string>& lines,
                    double time = 0);
int64_t db_insert_event(SqliteDb& db, int64_t job_id, const std::string& type,
                        const std::string& payload_json, double time = 0);
bool db_job_exists(SqliteDb& db, int64_t job_id);

}  // namespace ktl::jobs
