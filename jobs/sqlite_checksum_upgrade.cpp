#include "jobs/sqlite_checksum_upgrade.h"

#include <sqlite3.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "core/base/file_util.h"
#include "jobs/sqlite_checksum_vfs.h"
#include "jobs/sqlite_db.h"

namespace ktl::jobs {

namespace {

// Leaving WAL needs every other connection gone; SQLite answers busy (or stays in WAL) if not.
bool switch_to_rollback_journal(SqliteDb& db) {
  try {
    Statement st = db.prepare("PRAGMA journal_mode=DELETE");
    return st.step() && st.col_text(0) == "delete";
  } catch (const SqliteError& e) {
    if ((e.code & 0xff) == SQLITE_BUSY || (e.code & 0xff) == SQLITE_LOCKED) return false;
    throw;
  }
}

// Why not VACUUM in place: SQLite may write a page (cache spill) before page 1, whose header
// tells the shim to checksum, and a VACUUM that fails (a full disk) rolls the old pages back
// through the same shim, which would then write checksums into their data. A new file, stamped
// whole and renamed over the old one, is either complete or not there.
void vacuum_into_checksummed(SqliteDb& db, const std::string& tmp) {
  db.set_reserve_bytes(kPageChecksumBytes);  // VACUUM INTO lays the copy out with it
  db.prepare("VACUUM INTO ?1").bind(1, tmp).run();
  const DbFileHeader h = read_db_header(tmp);
  if (!h.is_database || h.reserved_bytes != kPageChecksumBytes)
    throw std::runtime_error(tmp + ": VACUUM INTO did not reserve the checksum bytes");
  stamp_page_checksums(tmp);
}

}  // namespace

bool add_page_checksums(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec) || fs::file_size(path, ec) == 0) return false;
  SqliteOptions o;
  o.create = false;
  o.wal = false;               // keep whatever mode the file is in until we know we may convert
  o.busy_timeout_ms = 2000;    // start-up must not hang on a stuck process
  SqliteDb db(path, o);
  if (db.page_count() == 0 || db.has_page_checksums()) return false;
  if (db.reserve_bytes() != 0) {  // another extension's reserve: not ours to rewrite
    spdlog::warn("{}: {} reserved bytes per page; page checksums not added", path,
                 db.reserve_bytes());
    return false;
  }
  if (!switch_to_rollback_journal(db)) {
    spdlog::warn("{}: in use by another process; page checksums will be added at a later start",
                 path);
    return false;
  }
  const std::string tmp = path + ".checksums-" + std::to_string(::getpid());
  fs::remove(tmp, ec);
  try {
    vacuum_into_checksummed(db, tmp);
    fs::rename(tmp, path);  // atomic: readers see the old file or the new one
    fsync_dir(fs::path(path).parent_path());
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  return true;
}

}  // namespace ktl::jobs
