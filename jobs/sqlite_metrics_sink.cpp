#include "jobs/sqlite_metrics_sink.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <stdexcept>

namespace ktl::jobs {

namespace {

template <typename T>
void prepend(std::vector<T>& dst, std::vector<T>&& front) {
  front.insert(front.end(), std::make_move_iterator(dst.begin()),
               std::make_move_iterator(dst.end()));
  dst = std::move(front);
}

// SQLite reopens a file it cannot open for writing read-only, and forgets why; ask the
// filesystem ourselves, so the message says why (e.g. "Read-only file system"). No descriptor of
// the database files is opened: closing one would drop this process's SQLite locks on them.
std::string probe_writable(const std::string& db_path) {
  for (const std::string& f : {db_path, db_path + "-wal", db_path + "-shm"})
    if (::faccessat(AT_FDCWD, f.c_str(), W_OK, AT_EACCESS) != 0 && errno != ENOENT)
      return f + ": " + std::strerror(errno);
  // A file beside it, made and removed: a full or failing disk shows here.
  const std::string probe = db_path + ".probe-" + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return std::string(std::strerror(errno));
  const bool wrote = ::write(fd, "x", 1) == 1;
  const int err = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  return wrote ? "" : std::string(std::strerror(err));
}

}  // namespace

SqliteMetricsSink::SqliteMetricsSink(const std::string& db_path, int64_t job_id,
                                     const SqliteMetricsSinkOptions& opts)
    : job_id_(job_id), opts_(opts) {
  SqliteOptions so;
  so.create = false;  // the server creates the database; a wrong path must not make a new one
  db_ = std::make_unique<SqliteDb>(db_path, so);
  if (sqlite3_db_readonly(db_->handle(), "main") == 1) {
    const std::string probe = probe_writable(db_path);
    throw std::runtime_error("cannot open " + db_path + " for writing" +
                             (probe.empty() ? std::string() : ": " + probe));
  }
  require_job_db_schema(*db_);
  if (!db_job_exists(*db_, job_id))
    throw std::runtime_error("job " + std::to_string(job_id) + " not found in " + db_path);
  thread_ = std::thread([this] { loop(); });
}

SqliteMetricsSink::~SqliteMetricsSink() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (int attempt = 0; attempt < 3 && pending() > 0; ++attempt) write_pending();
  if (size_t n = pending(); n > 0)
    std::fprintf(stderr, "job sink: %zu reports could not be written to %s\n", n,
                 db_->path().c_str());
}

void SqliteMetricsSink::enqueue_notify() {
  // Called with mu_ held: wake the writer early only when the buffer is large.
  if (buf_.size() >= opts_.max_buffered) cv_.notify_all();
}

void SqliteMetricsSink::metric(const std::string& key, int64_t step, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  buf_.metrics.push_back({key, step, value, unix_now()});
  enqueue_notify();
}

void SqliteMetricsSink::sample(int64_t step, const std::string& prompt, const std::string& text,
                               const std::string& kind) {
  std::lock_guard<std::mutex> lock(mu_);
  buf_.samples.push_back({0, step, prompt, text, kind, unix_now()});
  enqueue_notify();
}

void SqliteMetricsSink::checkpoint(int64_t step, const std::string& path,
                                   const std::map<std::string, double>& metrics) {
  std::lock_guard<std::mutex> lock(mu_);
  buf_.checkpoints.push_back({step, path, metrics, unix_now()});
  enqueue_notify();
}

void SqliteMetricsSink::checkpoint_deleted(int64_t step, const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  buf_.deleted_checkpoints.push_back({step, path, {}, unix_now()});
  enqueue_notify();
}

void SqliteMetricsSink::progress(int64_t step, int64_t total_steps) {
  std::lock_guard<std::mutex> lock(mu_);
  buf_.has_progress = true;  // only the latest matters
  buf_.progress_step = step;
  buf_.progress_total = total_steps;
}

void SqliteMetricsSink::log(const std::string& line) {
  if (!opts_.store_logs) return;
  std::lock_guard<std::mutex> lock(mu_);
  buf_.logs.push_back(line);
  enqueue_notify();
}

void SqliteMetricsSink::flush() {
  write_pending();
  std::lock_guard<std::mutex> lock(mu_);
  if (buf_.size() + in_flight_ > 0 && !last_error_.empty())
    throw std::runtime_error("job sink: " + std::to_string(buf_.size()) +
                             " reports not stored: " + last_error_);
}

size_t SqliteMetricsSink::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return buf_.size() + in_flight_;
}

void SqliteMetricsSink::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(opts_.flush_interval_ms),
                 [&] { return stop_ || buf_.size() >= opts_.max_buffered; });
    if (stop_) break;
    if (buf_.size() == 0) continue;
    lock.unlock();
    write_pending();
    lock.lock();
  }
}

void SqliteMetricsSink::write_pending() {
  std::lock_guard<std::mutex> wlock(write_mu_);
  Batch b;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::swap(b, buf_);
    in_flight_ = b.size();
  }
  if (b.size() == 0) return;
  try {
    Transaction tx(*db_);
    db_insert_metrics(*db_, job_id_, b.metrics);
    for (const auto& s : b.samples) db_insert_sample(*db_, job_id_, s);
    for (const auto& c : b.checkpoints) db_insert_checkpoint(*db_, job_id_, c);
    for (const auto& c : b.deleted_checkpoints) db_delete_checkpoint(*db_, job_id_, c);
    if (b.has_progress) db_update_progress(*db_, job_id_, b.progress_step, b.progress_total);
    db_insert_logs(*db_, job_id_, b.logs);
    tx.commit();
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_ = 0;
    last_error_.clear();
  } catch (const std::exception& e) {
    // Keep the rows (in order, before newer ones) and retry on the next flush. SqliteError
    // names the file and the errno; only SQLite's read-only fallback (it could not open the file
    // for writing and forgot why) needs the filesystem asked.
    std::string why = e.what();
    const auto* se = dynamic_cast<const SqliteError*>(&e);
    if (se && (se->code & 0xff) == SQLITE_READONLY) {
      if (std::string probe = probe_writable(db_->path()); !probe.empty()) why += " (" + probe + ")";
    }
    std::fprintf(stderr, "job sink: %s (will retry)\n", why.c_str());
    std::lock_guard<std::mutex> lock(mu_);
    last_error_ = why;
    in_flight_ = 0;
    prepend(buf_.metrics, std::move(b.metrics));
    prepend(buf_.samples, std::move(b.samples));
    prepend(buf_.checkpoints, std::move(b.checkpoints));
    prepend(buf_.deleted_checkpoints, std::move(b.deleted_checkpoints));
    prepend(buf_.logs, std::move(b.logs));
    if (!buf_.has_progress && b.has_progress) {
      buf_.has_progress = true;
      buf_.progress_step = b.progress_step;
      buf_.progress_total = b.progress_total;
    }
  }
}

}  // namespace ktl::jobs
