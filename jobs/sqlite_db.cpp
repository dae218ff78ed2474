#include "jobs/sqlite_db.h"

#include <sqlite3.h>

#include <cerrno>
#include <cstring>

#include "jobs/sqlite_checksum_vfs.h"

namespace ktl::jobs {

namespace {

bool is_corrupt_code(int rc) {
  return rc == SQLITE_IOERR_DATA || (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB;
}

// "<path>: database corrupt (page checksum mismatch) — run `ktl doctor` (<context>)": the file
// first, so whoever reads it (a log, an API error) knows what to check.
std::string corrupt_message(sqlite3* db, int rc, std::string_view context) {
  const char* file = db ? sqlite3_db_filename(db, "main") : nullptr;
  const std::string why = rc == SQLITE_IOERR_DATA ? "page checksum mismatch" : sqlite3_errstr(rc);
  return std::string(file && *file ? file : "database") + ": database corrupt (" + why +
         ") \u2014 run `ktl doctor` (" + std::string(context) + ")";
}

// "<path>: <context>: <SQLite's words> (<errno's words>)": a failed write names the file and,
// for I/O errors and a full disk, what the operating system said.
std::string error_message(sqlite3* db, int rc, std::string_view context, const char* what) {
  const char* file = db ? sqlite3_db_filename(db, "main") : nullptr;
  std::string msg = (file && *file ? std::string(file) + ": " : std::string()) +
                    std::string(context) + ": " + what;
  const int prim = rc & 0xff;
  const int os = prim == SQLITE_FULL ? ENOSPC
                 : prim == SQLITE_IOERR || prim == SQLITE_CANTOPEN
                     ? (db ? sqlite3_system_errno(db) : 0)
                     : 0;
  if (os != 0) msg += " (" + std::string(std::strerror(os)) + ")";
  return msg;
}

[[noreturn]] void throw_error(sqlite3* db, int rc, std::string_view context) {
  if (is_corrupt_code(rc)) throw SqliteError(corrupt_message(db, rc, context), rc);
  throw SqliteError(
      error_message(db, rc, context, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)), rc);
}

std::string sql_head(std::string_view sql) {
  std::string s(sql.substr(0, 60));
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

}  // namespace

bool SqliteError::corrupt() const {
  return is_corrupt_code(code);
}

Statement::Statement(sqlite3* db, std::string_view sql) : db_(db) {
  int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  if (rc != SQLITE_OK) throw_error(db, rc, "sqlite prepare '" + sql_head(sql) + "'");
}

Statement::~Statement() {
  if (stmt_) sqlite3_finalize(stmt_);
}

Statement::Statement(Statement&& o) noexcept : db_(o.db_), stmt_(o.stmt_) {
  o.stmt_ = nullptr;
}

Statement& Statement::bind(int index, int64_t v) {
  int rc = sqlite3_bind_int64(stmt_, index, v);
  if (rc != SQLITE_OK) throw_error(db_, rc, "sqlite bind");
  return *this;
}

Statement& Statement::bind(int index, double v) {
  int rc = sqlite3_bind_double(stmt_, index, v);
  if (rc != SQLITE_OK) throw_error(db_, rc, "sqlite bind");
  return *this;
}

Statement& Statement::bind(int index, std::string_view v) {
  int rc = sqlite3_bind_text(stmt_, index, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) throw_error(db_, rc, "sqlite bind");
  return *this;
}

Statement& Statement::bind_null(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) throw_error(db_, rc, "sqlite bind");
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::string ctx = "sqlite step '" + sql_head(sqlite3_sql(stmt_)) + "'";
  sqlite3_reset(stmt_);
  throw_error(db_, rc, ctx);
}

void Statement::run() {
  while (step()) {
  }
  reset();
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::col_int(int col) const {
  return sqlite3_column_int64(stmt_, col);
}
double Statement::col_double(int col) const {
  return sqlite3_column_double(stmt_, col);
}
bool Statement::col_is_null(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

std::string Statement::col_text(int col) const {
  const auto* p = sqlite3_column_text(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

SqliteDb::SqliteDb(const std::string& path, const SqliteOptions& opts) : path_(path) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (opts.create ? SQLITE_OPEN_CREATE : 0);
  const char* vfs = opts.page_checksums ? checksum_vfs_name() : nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, vfs);
  if (rc != SQLITE_OK) {
    std::string msg =
        "cannot open database " + path + ": " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    throw SqliteError(msg, rc);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, opts.busy_timeout_ms);
  try {
    // A new file gets the checksum reserve before its first page is written (the WAL switch
    // below writes page 1); an existing file keeps its layout.
    if (opts.page_checksums && page_count() == 0) set_reserve_bytes(kPageChecksumBytes);
    if (opts.wal) exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON");
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

SqliteDb::~SqliteDb() {
  cache_.clear();  // statements must be finalized before the connection closes
  if (db_) sqlite3_close(db_);
}

void SqliteDb::exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = error_message(db_, rc, "sqlite exec '" + sql_head(sql) + "'",
                                    err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    if (is_corrupt_code(rc)) msg = corrupt_message(db_, rc, "sqlite exec '" + sql_head(sql) + "'");
    throw SqliteError(msg, rc);
  }
}

int64_t SqliteDb::page_count() {
  Statement st = prepare("PRAGMA page_count");
  return st.step() ? st.col_int(0) : 0;
}

int SqliteDb::reserve_bytes() {
  int n = -1;  // -1 asks without changing
  sqlite3_file_control(db_, "main", SQLITE_FCNTL_RESERVE_BYTES, &n);
  return n;
}

void SqliteDb::set_reserve_bytes(int n) {
  const int rc = sqlite3_file_control(db_, "main", SQLITE_FCNTL_RESERVE_BYTES, &n);
  if (rc != SQLITE_OK) throw_error(db_, rc, "sqlite reserve bytes");
}

bool SqliteDb::has_page_checksums() {
  return reserve_bytes() == kPageChecksumBytes;
}

Statement SqliteDb::prepare(std::string_view sql) {
  return Statement(db_, sql);
}

Statement& SqliteDb::cached(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) it = cache_.emplace(sql, std::make_unique<Statement>(db_, sql)).first;
  it->second->reset();
  return *it->second;
}

int64_t SqliteDb::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}
int SqliteDb::changes() const {
  return sqlite3_changes(db_);
}

int SqliteDb::user_version() {
  Statement st = prepare("PRAGMA user_version");
  return st.step() ? static_cast<int>(st.col_int(0)) : 0;
}

void SqliteDb::set_user_version(int v) {
  exec("PRAGMA user_version=" + std::to_string(v));
}

Transaction::Transaction(SqliteDb& db) : db_(db) {
  db_.exec("BEGIN IMMEDIATE");
}

Transaction::~Transaction() {
  if (done_) return;
  try {
    db_.exec("ROLLBACK");
  } catch (...) {
    // Nothing to do: SQLite already rolled back (e.g. after SQLITE_FULL) or the handle is gone.
  }
}

void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace ktl::jobs
