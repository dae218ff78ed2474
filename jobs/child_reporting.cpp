#include "jobs/child_reporting.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "jobs/child_process.h"
#include "jobs/sqlite_metrics_sink.h"

namespace ktl::jobs {

namespace {

class TeeSink : public MetricsSink {
 public:
  TeeSink(MetricsSink& a, MetricsSink& b) : a_(a), b_(b) {}
  void metric(const std::string& key, int64_t step, double value) override {
    a_.metric(key, step, value);
    b_.metric(key, step, value);
  }
  void sample(int64_t step, const std::string& prompt, const std::string& text,
              const std::string& kind) override {
    a_.sample(step, prompt, text, kind);
    b_.sample(step, prompt, text, kind);
  }
  void checkpoint(int64_t step, const std::string& path,
                  const std::map<std::string, double>& metrics) override {
    a_.checkpoint(step, path, metrics);
    b_.checkpoint(step, path, metrics);
  }
  void checkpoint_deleted(int64_t step, const std::string& path) override {
    a_.checkpoint_deleted(step, path);
    b_.checkpoint_deleted(step, path);
  }
  void progress(int64_t step, int64_t total) override {
    a_.progress(step, total);
    b_.progress(step, total);
  }
  void log(const std::string& line) override {
    a_.log(line);
    b_.log(line);
  }
  void flush() override {
    a_.flush();
    b_.flush();
  }

 private:
  MetricsSink& a_;
  MetricsSink& b_;
};

// Sends this process exactly one SIGTERM when the server that started it dies (its parent pid
// changes). Replaces PR_SET_PDEATHSIG, which the kernel may deliver several times (once per
// server thread the child gets re-parented to) and so kill a trainer whose first SIGTERM
// started its final checkpoint and whose handler then restored the default action.
class ParentWatcher {
 public:
  ParentWatcher() {
#ifdef __linux__
    // The runner's pid from the environment catches a server that died before we looked; a
    // stale value (that process alive but not our parent) falls back to getppid().
    const char* env = std::getenv(kRunnerPidEnv);
    pid_t runner = env ? static_cast<pid_t>(std::atoll(env)) : 0;
    parent_ = (runner > 0 && (runner == getppid() || kill(runner, 0) != 0)) ? runner : getppid();
    prctl(PR_SET_PDEATHSIG, 0);
    thread_ = std::thread([this] { loop(); });
#endif
  }
  ~ParentWatcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (getppid() != parent_) {
        kill(getpid(), SIGTERM);
        return;
      }
      cv_.wait_for(lock, std::chrono::milliseconds(200));
    }
  }

  pid_t parent_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

class JobSink : public SqliteMetricsSink {
 public:
  using SqliteMetricsSink::SqliteMetricsSink;

 private:
  ParentWatcher watcher_;
};

}  // namespace

std::unique_ptr<MetricsSink> make_job_sink(const std::string& db_path, int64_t job_id) {
  if (db_path.empty()) throw std::runtime_error("--job-db is empty");
  if (job_id <= 0) throw std::runtime_error("--job-id must be a positive job id");
#ifdef SIGPIPE
  std::signal(SIGPIPE, SIG_IGN);
#endif
  return std::make_unique<JobSink>(db_path, job_id);
}

std::unique_ptr<MetricsSink> make_tee_sink(MetricsSink& a, MetricsSink& b) {
  return std::make_unique<TeeSink>(a, b);
}

ChildSinks::ChildSinks(const std::string& db_path, int64_t job_id) {
  if (db_path.empty()) return;
  job_ = make_job_sink(db_path, job_id);
  tee_ = make_tee_sink(console_, *job_);
}

}  // namespace ktl::jobs
