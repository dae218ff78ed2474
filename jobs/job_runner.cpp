#include "jobs/job_runner.h"

#include <algorithm>

#include "core/base/file_util.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "jobs/child_process.h"

namespace ktl::jobs {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string self_executable() {
  const std::string exe = ktl::executable_path();
  return exe.empty() ? "ktl" : exe;
}

std::string quote_arg(const std::string& a) {
  if (!a.empty() && a.find_first_of(" \t\"'\\$") == std::string::npos) return a;
  std::string q = "'";
  for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Splits complete lines (\n or \r) off the front of `buf`; a line longer than `max` is cut.
std::vector<std::string> take_lines(std::string& buf, size_t max, bool final) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < buf.size(); ++i) {
    if (buf[i] != '\n' && buf[i] != '\r') continue;
    if (i > start || buf[i] == '\n') {
      std::string line = buf.substr(start, i - start);
      if (line.size() > max) line = line.substr(0, max) + " [...]";
      if (!(line.empty() && i > 0 && buf[i - 1] == '\r')) lines.push_back(std::move(line));
    }
    start = i + 1;
  }
  buf.erase(0, start);
  if (buf.size() > max || (final && !buf.empty())) {
    lines.push_back(buf.size() > max ? buf.substr(0, max) + " [...]" : buf);
    buf.clear();
  }
  return lines;
}

}  // namespace

JobRunner::JobRunner(JobStore& store, JobRunnerOptions opts)
    : store_(store), opts_(std::move(opts)) {
  if (opts_.executable.empty()) opts_.executable = self_executable();
  if (opts_.max_concurrent < 1) opts_.max_concurrent = 1;
}

JobRunner::~JobRunner() {
  stop();
}

void JobRunner::start() {
  for (const Job& j : store_.mark_running_interrupted())
    spdlog::warn("job {} ({}) was running when the server stopped: now interrupted", j.id, j.name);
  // Interrupted by a crash (just now) or by an orderly stop (before): both carry on.
  std::vector<Job> interrupted;
  if (opts_.auto_resume_interrupted) interrupted = store_.list_jobs(JobStatus::kInterrupted);
  std::reverse(interrupted.begin(), interrupted.end());  // oldest first
  for (const Job& j : interrupted) {
    // Its orphaned child got SIGTERM and may still be writing its last checkpoint.
    auto deadline = Clock::now() + std::chrono::milliseconds(opts_.stop_grace_ms);
    while (job_process_alive(j.pid, j.id) && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    try {
      Job r = resume(j.id);
      spdlog::info("job {} resumed from '{}'", j.id, r.resume_from);
    } catch (const std::exception& e) {
      spdlog::error("job {}: cannot resume: {}", j.id, e.what());
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  scheduler_ = std::thread([this] { scheduler_loop(); });
}

void JobRunner::stop() {
  std::map<int64_t, std::shared_ptr<Running>> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [id, r] : running_) r->shutdown = true;
  }
  cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    running.swap(running_);
  }
  for (auto& [id, r] : running)
    if (r->thread.joinable()) r->thread.join();
}

void JobRunner::notify() {
  cv_.notify_all();
}

bool JobRunner::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

Job JobRunner::submit(const ValidatedSpec& spec) {
  NewJob nj;
  nj.kind = spec.kind;
  nj.name = spec.name;
  nj.spec_json = spec.to_json();
  nj.params = spec.params();
  nj.output_dir_for = [&](int64_t id) { return job_output_dir(spec, opts_.spec_ctx, id); };
  Job j = store_.create_job(nj);
  notify();
  return j;
}

Job JobRunner::cancel(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = running_.find(id);
  if (it != running_.end() && !it->second->done) {
    if (!it->second->cancel.exchange(true)) store_.add_event(id, "cancel_requested", "{}");
    cv_.notify_all();
    return store_.require_job(id);
  }
  Job j = store_.require_job(id);
  if (j.status == JobStatus::kQueued)
    return store_.update_status(id, JobStatus::kCancelled,
                                {std::string("cancelled before it started"), {}, {}});
  throw JobStateError("job " + std::to_string(id) + " is " + to_string(j.status) +
                      "; only queued or running jobs can be cancelled");
}

Job JobRunner::resume(int64_t id) {
  Job j = store_.require_job(id);
  if (!job_status_is_resumable(j.status))
    throw JobStateError("job " + std::to_string(id) + " is " + to_string(j.status) +
                        "; only failed, cancelled or interrupted jobs can be resumed");
  if (j.status == JobStatus::kInterrupted && job_process_alive(j.pid, j.id))
    throw JobStateError("job " + std::to_string(id) + ": its previous process (pid " +
                        std::to_string(j.pid) + ") is still stopping; try again shortly");
  std::string from;
  if (j.kind == JobKind::kTrain || j.kind == JobKind::kPipeline || j.kind == JobKind::kSft ||
      j.kind == JobKind::kDpo || j.kind == JobKind::kDistill) {
    auto cps = store_.checkpoints(id);
    for (auto it = cps.rbegin(); it != cps.rend(); ++it) {
      std::error_code ec;
      if (fs::is_directory(it->path, ec)) {  // the trainer may have rotated older ones away
        from = it->path;
        break;
      }
    }
  }
  Job q = store_.update_status(id, JobStatus::kQueued, {std::nullopt, std::nullopt, from});
  notify();
  return q;
}

std::vector<int64_t> JobRunner::running_ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> ids;
  for (const auto& [id, r] : running_)
    if (!r->done) ids.push_back(id);
  return ids;
}

bool JobRunner::cancel_requested(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = running_.find(id);
  return it != running_.end() && !it->second->done && it->second->cancel;
}

bool JobRunner::wait_idle(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    bool busy = false;
    for (const auto& [id, r] : running_) busy = busy || !r->done;
    if (!busy && !store_.next_queued()) return true;
    if (Clock::now() >= deadline) return false;
    cv_.wait_for(lock, std::chrono::milliseconds(50));
  }
}

void JobRunner::scheduler_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    reap_done_locked();
    try {
      start_ready_locked();
    } catch (const std::exception& e) {
      spdlog::error("job scheduler: {}", e.what());  // e.g. database busy: retry next round
    }
    cv_.wait_for(lock, std::chrono::milliseconds(500));
  }
}

void JobRunner::reap_done_locked() {
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->second->done) {
      if (it->second->thread.joinable()) it->second->thread.join();
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
}

void JobRunner::start_ready_locked() {
  while (!stopping_ && static_cast<int>(running_.size()) < opts_.max_concurrent) {
    std::optional<Job> next = store_.next_queued();
    if (!next) return;
    Job job;
    try {
      job = store_.update_status(next->id, JobStatus::kRunning);
    } catch (const JobStateError&) {
      continue;  // cancelled meanwhile
    }
    auto r = std::make_shared<Running>();
    r->job_id = job.id;
    running_[job.id] = r;
    r->thread = std::thread([this, r, job] { monitor(r, job); });
  }
}

void JobRunner::monitor(std::shared_ptr<Running> r, Job job) {
  std::string error;
  bool completed = true;
  try {
    std::vector<JobStage> stages = build_job_stages(job, opts_.spec_ctx, store_.db_path());
    for (const JobStage& stage : stages) {
      if (r->cancel || r->shutdown || !run_stage(*r, job, stage, error)) {
        completed = false;
        break;
      }
    }
  } catch (const std::exception& e) {
    completed = false;
    error = e.what();
  }
  JobStatus to = completed     ? JobStatus::kSucceeded
                 : r->shutdown ? JobStatus::kInterrupted
                 : r->cancel   ? JobStatus::kCancelled
                               : JobStatus::kFailed;
  if (to == JobStatus::kInterrupted) error = "the server stopped while this job ran";
  if (to == JobStatus::kCancelled) error.clear();
  try {  // the job's checkpoint list names only directories that exist
    store_.prune_missing_checkpoints(job.id);
  } catch (const std::exception& e) {
    spdlog::warn("job {}: cannot prune its checkpoint list: {}", job.id, e.what());
  }
  record_outcome(job.id, to, error);
  spdlog::info("job {} ({}) {}{}{}", job.id, job.name, to_string(to), error.empty() ? "" : ": ",
               error);
  r->done = true;
  cv_.notify_all();
}

void JobRunner::record_outcome(int64_t id, JobStatus to, const std::string& error) {
  // A job must not stay "running" once its child has ended: retry until the write lands (a
  // full disk may be freed) or the server stops (its restart marks the job interrupted).
  for (int attempt = 0;; ++attempt) {
    try {
      store_.update_status(id, to, {error, int64_t{0}, std::nullopt});
      if (attempt > 0) spdlog::info("job {}: status {} recorded after {} retries", id, to_string(to), attempt);
      return;
    } catch (const JobStateError& e) {  // not retryable (e.g. deleted meanwhile)
      spdlog::error("job {}: cannot record status {}: {}", id, to_string(to), e.what());
      return;
    } catch (const std::exception& e) {
      if (attempt % 60 == 0)
        spdlog::error("job {}: cannot record status {} (retrying every second): {}", id,
                      to_string(to), e.what());
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; })) return;
  }
}

bool JobRunner::run_stage(Running& r, const Job& job, const JobStage& stage, std::string& error) {
  if (!stage.output_dir.empty()) {
    std::error_code ec;
    fs::create_directories(stage.output_dir, ec);
    if (ec) {
      error = "cannot create " + stage.output_dir + ": " + ec.message();
      return false;
    }
  }
  std::string cmdline = quote_arg(opts_.executable);
  for (const auto& a : stage.args) cmdline += " " + quote_arg(a);
  auto append = [&](const std::vector<std::string>& lines) {
    try {
      store_.append_logs(job.id, lines);
    } catch (const std::exception& e) {
      spdlog::warn("job {}: {} log lines lost: {}", job.id, lines.size(), e.what());
    }
  };
  append({"$ " + cmdline});
  ChildProcess child(opts_.executable, stage.args);
  store_.set_pid(job.id, child.pid());
  store_.add_event(job.id, "stage",
                   nlohmann::json({{"stage", stage.name}, {"pid", child.pid()}}).dump());
  std::string buf, last_line;
  bool open = true, sent_term = false, sent_kill = false;
  Clock::time_point kill_at{}, exited_at{};
  while (true) {
    if (!sent_term && (r.cancel || r.shutdown)) {
      child.signal_group(SIGTERM);
      sent_term = true;
      kill_at = Clock::now() +
                std::chrono::milliseconds(r.shutdown ? opts_.stop_grace_ms : opts_.cancel_grace_ms);
    }
    if (sent_term && !sent_kill && Clock::now() >= kill_at) {
      child.signal_group(SIGKILL);
      sent_kill = true;
    }
    if (open)
      open = child.read_some(buf, 100);
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto lines = take_lines(buf, opts_.max_log_line, !open);
    for (const auto& l : lines)
      if (!l.empty()) last_line = l;
    if (!lines.empty()) append(lines);
    if (child.try_reap()) {
      if (!open) break;
      // The pipe may stay open through a grandchild: drain a little, then stop reading.
      if (exited_at == Clock::time_point{})
        exited_at = Clock::now();
      else if (Clock::now() - exited_at > std::chrono::seconds(1))
        break;
    }
  }
  if (auto lines = take_lines(buf, opts_.max_log_line, true); !lines.empty()) append(lines);
  const ChildExit& ex = child.exit_status();
  if (sent_term) {  // stopped on request: never "completed", whatever the exit code
    error = stage.name + " stopped on request (" + ex.describe() + ")";
    return false;
  }
  if (ex.ok()) return true;
  error = stage.name + " " + ex.describe() + (last_line.empty() ? "" : ": " + last_line);
  return false;
}

}  // namespace ktl::jobs
