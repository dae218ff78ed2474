// RAII wrappers for SQLite: a connection (WAL, busy timeout, synchronous=NORMAL, page checksums
// through jobs/sqlite_checksum_vfs.h), prepared statements and BEGIN IMMEDIATE transactions
// that roll back unless committed. A damaged database (a page checksum mismatch, SQLITE_CORRUPT)
// surfaces as a SqliteError whose corrupt() is true and whose message names the file.
// Not thread-safe: one SqliteDb per thread, or guard it with a mutex (JobStore does). Several
// processes may open the same file: WAL lets readers run beside the one writer, and the busy
// timeout makes writers wait for each other instead of failing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace ktl::jobs {

struct SqliteError : std::runtime_error {
  SqliteError(const std::string& what, int code) : std::runtime_error(what), code(code) {}
  int code;  // SQLite primary/extended result code
  // The file is damaged (a page checksum mismatch, SQLITE_CORRUPT, SQLITE_NOTADB): retrying
  // will not help; `ktl doctor` says what is wrong.
  bool corrupt() const;
};

// One prepared statement. Binding indexes start at 1, column indexes at 0.
class Statement {
 public:
  Statement(sqlite3* db, std::string_view sql);
  ~Statement();
  Statement(Statement&& o) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, int64_t v);
  Statement& bind(int index, int v) { return bind(index, static_cast<int64_t>(v)); }
  Statement& bind(int index, double v);
  Statement& bind(int index, std::string_view v);
  Statement& bind(int index, const char* v) { return bind(index, std::string_view(v)); }
  Statement& bind(int index, const std::string& v) { return bind(index, std::string_view(v)); }
  Statement& bind_null(int index);
  // Binds args to ?1, ?2, ... in order.
  template <typename... A>
  Statement& bind_all(const A&... args) {
    int i = 0;
    (bind(++i, args), ...);
    return *this;
  }

  // Runs one step: true when a row is available, false when done. Throws SqliteError.
  bool step();
  // Runs to completion (for INSERT/UPDATE/DELETE), then resets.
  void run();
  // Ready to run again with new bindings.
  void reset();

  int64_t col_int(int col) const;
  double col_double(int col) const;
  std::string col_text(int col) const;
  bool col_is_null(int col) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

struct SqliteOptions {
  int busy_timeout_ms = 10000;  // how long a writer waits for another process's transaction
  bool wal = true;              // journal_mode=WAL: readers never block the writer
  bool create = true;           // create the file when missing
  // Open through the checksum VFS; a new file gets 8 reserved bytes per page, so its pages are
  // checksummed. An existing file without them is read and written as before (JobStore adds
  // them once: jobs/sqlite_checksum_upgrade.h).
  bool page_checksums = true;
};

class SqliteDb {
 public:
  explicit SqliteDb(const std::string& path, const SqliteOptions& opts = {});
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Runs one or more statements with no results. Throws SqliteError naming the SQL's start.
  void exec(std::string_view sql);
  Statement prepare(std::string_view sql);
  // A statement kept for the connection's lifetime, reset and ready to bind. Do not hold two
  // references to the same SQL at once.
  Statement& cached(const std::string& sql);

  int64_t last_insert_rowid() const;
  int changes() const;
  int user_version();
  void set_user_version(int v);
  // True when the file has 8 reserved bytes per page, so every page carries a checksum.
  bool has_page_checksums();
  int64_t page_count();  // 0: a new, empty file
  // Reserved bytes at the end of each page: what the file has, or what was asked for a new
  // file / the next VACUUM (SQLITE_FCNTL_RESERVE_BYTES).
  int reserve_bytes();
  void set_reserve_bytes(int n);
  const std::string& path() const { return path_; }
  sqlite3* handle() { return db_; }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
  std::map<std::string, std::unique_ptr<Statement>> cache_;
};

// BEGIN IMMEDIATE on construction (takes the write lock up front, so two writers never
// deadlock upgrading read locks); ROLLBACK in the destructor unless commit() ran.
class Transaction {
 public:
  explicit Transaction(SqliteDb& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  SqliteDb& db_;
  bool done_ = false;
};

}  // namespace ktl::jobs
