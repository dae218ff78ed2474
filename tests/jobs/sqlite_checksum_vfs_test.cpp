// Page checksums for the job database: a byte flipped on disk inside a row is an error that
// names the file (not a silently wrong value), pages checkpointed from the WAL are checksummed,
// a crash's WAL still recovers, and a database from before checksums is upgraded keeping its
// rows. Prints the cost of checksumming 10k metric rows.
#include "jobs/sqlite_checksum_vfs.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "jobs/job_db.h"
#include "jobs/job_store.h"
#include "jobs/sqlite_checksum_upgrade.h"
#include "jobs/sqlite_db.h"
#include "tests/support/job_test_util.h"

namespace ktl::jobs {
namespace {

using testing::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Flips one byte of `needle`'s first occurrence in the file; returns its offset.
size_t flip_inside(const std::string& path, const std::string& needle) {
  const size_t at = slurp(path).find(needle);
  if (at == std::string::npos) return at;
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(at + 3));
  f.put(needle[3] ^ 0x01);  // "mar" + 'k' -> 'j': still a valid row, a different value
  return at;
}

SqliteOptions without_checksums() {
  SqliteOptions o;
  o.page_checksums = false;
  return o;
}

void write_marker(const std::string& db_path, const SqliteOptions& o) {
  SqliteDb db(db_path, o);
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  db.exec("INSERT INTO t(v) VALUES ('marker-0123456789')");
}

std::string read_marker(const std::string& db_path, const SqliteOptions& o = {}) {
  SqliteDb db(db_path, o);
  Statement st = db.prepare("SELECT v FROM t WHERE id = 1");
  return st.step() ? st.col_text(0) : "";
}

TEST(SqliteChecksumVfs, NewDatabasesAreCreatedWithChecksums) {
  TempDir dir;
  const std::string path = dir.str("new.db");
  {
    SqliteDb db(path);
    EXPECT_TRUE(db.has_page_checksums());
    db.exec("CREATE TABLE t(v TEXT)");
    for (int i = 0; i < 200; ++i) db.exec("INSERT INTO t VALUES (hex(randomblob(100)))");
  }
  const DbFileHeader h = read_db_header(path);
  EXPECT_TRUE(h.is_database);
  EXPECT_EQ(h.reserved_bytes, kPageChecksumBytes);
  EXPECT_GT(std::filesystem::file_size(path), 8u * h.page_size);
  EXPECT_TRUE(find_bad_page_checksums(path).empty());
  SqliteDb again(path);  // the WAL switch kept the reserve
  Statement st = again.prepare("PRAGMA journal_mode");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.col_text(0), "wal");
}

TEST(SqliteChecksumVfs, AFlippedByteInARowIsAnErrorNamingTheFile) {
  TempDir dir;
  const std::string path = dir.str("ktl.db");
  write_marker(path, {});
  ASSERT_EQ(read_marker(path), "marker-0123456789");
  ASSERT_NE(flip_inside(path, "marker-0123456789"), std::string::npos);
  EXPECT_EQ(find_bad_page_checksums(path).size(), 1u);
  try {
    read_marker(path);
    FAIL() << "the damaged row was served";
  } catch (const SqliteError& e) {
    EXPECT_TRUE(e.corrupt());
    EXPECT_EQ(e.code, SQLITE_IOERR_DATA);
    const std::string what = e.what();
    EXPECT_EQ(what.find(path + ": database corrupt (page checksum mismatch)"), 0u) << what;
    EXPECT_NE(what.find("ktl doctor"), std::string::npos) << what;
  }
  // PRAGMA integrity_check through the shim sees it too (`ktl doctor` runs it).
  SqliteDb db(path);
  EXPECT_THROW(db.exec("PRAGMA integrity_check"), SqliteError);
}

// Why: without checksums the same flip is served as a valid, wrong value.
TEST(SqliteChecksumVfs, WithoutChecksumsTheFlipGoesUnnoticed) {
  TempDir dir;
  const std::string path = dir.str("plain.db");
  write_marker(path, without_checksums());
  ASSERT_NE(flip_inside(path, "marker-0123456789"), std::string::npos);
  EXPECT_EQ(read_marker(path, without_checksums()), "marjer-0123456789");
  EXPECT_EQ(read_marker(path), "marjer-0123456789");  // no reserve: the shim passes it through
}

TEST(SqliteChecksumVfs, JobStoreReadsReportTheCorruptFile) {
  TempDir dir;
  const std::string path = dir.str("ktl.db");
  int64_t id = 0;
  {
    JobStore store(path);
    NewJob j;
    j.name = "marker-job-name-0123456789";
    j.spec_json = "{}";
    id = store.create_job(j).id;
  }
  ASSERT_NE(flip_inside(path, "marker-job-name-0123456789"), std::string::npos);
  JobStore store(path);
  try {
    store.get_job(id);
    FAIL() << "the damaged job was served";
  } catch (const SqliteError& e) {
    EXPECT_TRUE(e.corrupt());
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// In WAL mode pages reach the main file through a checkpoint: they must be checksummed then.
TEST(SqliteChecksumVfs, PagesCheckpointedFromTheWalAreChecksummed) {
  TempDir dir;
  const std::string path = dir.str("wal.db");
  {
    SqliteDb db(path);
    db.exec("PRAGMA wal_autocheckpoint=0; CREATE TABLE t(v TEXT)");
    Transaction tx(db);
    for (int i = 0; i < 500; ++i) db.exec("INSERT INTO t VALUES (hex(randomblob(400)))");
    tx.commit();
    EXPECT_GT(std::filesystem::file_size(path + "-wal"), 100u * 4096);  // all still in the WAL
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  EXPECT_GT(std::filesystem::file_size(path), 100u * 4096);
  EXPECT_TRUE(find_bad_page_checksums(path).empty());
  SqliteDb db(path);
  Statement st = db.prepare("SELECT COUNT(*) FROM t");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.col_int(0), 500);
}

// A process killed with committed frames in the WAL: the next open recovers them (the shim
// never changes a WAL frame's bytes, so SQLite's frame checksums still hold).
TEST(SqliteChecksumVfs, ACrashesWalStillRecovers) {
  TempDir dir;
  const std::string path = dir.str("crash.db");
  { SqliteDb(path).exec("CREATE TABLE t(v TEXT)"); }
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    try {
      SqliteDb db(path);
      db.exec("PRAGMA wal_autocheckpoint=0");
      for (int i = 0; i < 300; ++i) db.exec("INSERT INTO t VALUES (hex(randomblob(200)))");
      _exit(0);  // no close: the WAL keeps every frame, the -shm is left behind
    } catch (...) {
      _exit(1);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_GT(std::filesystem::file_size(path + "-wal"), 0u);
  std::filesystem::remove(path + "-shm");  // force a recovery from the WAL itself
  {
    SqliteDb db(path);
    Statement st = db.prepare("SELECT COUNT(*) FROM t");
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.col_int(0), 300);
  }
  EXPECT_TRUE(find_bad_page_checksums(path).empty());
}

TEST(SqliteChecksumVfs, AnOldDatabaseIsUpgradedAndKeepsItsRows) {
  TempDir dir;
  const std::string path = dir.str("ktl.db");
  {
    SqliteDb old(path, without_checksums());
    migrate(old, job_db_migrations());
    Transaction tx(old);
    old.exec("INSERT INTO jobs(kind, name, spec, status, created_at) "
             "VALUES ('train', 'old-job', '{}', 'succeeded', 1)");
    std::vector<MetricPoint> pts;
    for (int i = 0; i < 2000; ++i) pts.push_back({"train/loss", i, 1.0 / (i + 1), 1});
    db_insert_metrics(old, 1, pts);
    tx.commit();
  }
  ASSERT_EQ(read_db_header(path).reserved_bytes, 0);
  {
    JobStore store(path);
    EXPECT_EQ(store.require_job(1).name, "old-job");
    EXPECT_EQ(store.metrics(1, "train/loss").size(), 2000u);
    store.add_metrics(1, {{"train/loss", 2000, 0.5, 0}});
  }
  EXPECT_EQ(read_db_header(path).reserved_bytes, kPageChecksumBytes);
  EXPECT_TRUE(find_bad_page_checksums(path).empty());
  SqliteDb db(path);
  EXPECT_TRUE(db.has_page_checksums());
  Statement st = db.prepare("PRAGMA journal_mode");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.col_text(0), "wal");
  EXPECT_FALSE(add_page_checksums(path));  // once
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".checksums-"), std::string::npos) << e.path();
}

// Leaving WAL needs the only connection: with another one open the file is left as it was.
TEST(SqliteChecksumVfs, TheUpgradeWaitsWhileTheFileIsInUse) {
  TempDir dir;
  const std::string path = dir.str("busy.db");
  SqliteDb other(path, without_checksums());
  other.exec("CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('x')");
  EXPECT_FALSE(add_page_checksums(path));
  EXPECT_FALSE(other.has_page_checksums());
  Statement st = other.prepare("SELECT v FROM t");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.col_text(0), "x");
}

// Not a benchmark with a threshold (machines differ): the figure is printed for the docs.
TEST(SqliteChecksumVfs, CostOfChecksummingTenThousandMetricRows) {
  TempDir dir;
  for (bool checksums : {false, true}) {
    SqliteOptions o;
    o.page_checksums = checksums;
    const std::string path = dir.str(checksums ? "with.db" : "without.db");
    SqliteDb db(path, o);
    migrate(db, job_db_migrations());
    db.exec("INSERT INTO jobs(kind, name, spec, status, created_at) "
            "VALUES ('train', 'perf', '{}', 'running', 1)");
    const auto t0 = std::chrono::steady_clock::now();
    for (int batch = 0; batch < 100; ++batch) {  // the sink's batching: ~100 rows a transaction
      std::vector<MetricPoint> pts;
      for (int i = 0; i < 100; ++i) pts.push_back({"train/loss", batch * 100 + i, 1.0 / (i + 1)});
      Transaction tx(db);
      db_insert_metrics(db, 1, pts);
      tx.commit();
    }
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("10k metric rows %s page checksums: %.3f s\n", checksums ? "with" : "without", s);
  }
}

}  // namespace
}  // namespace ktl::jobs
