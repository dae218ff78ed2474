// A child process with its stdout and stderr merged into one pipe, in its own process group.
// RAII: destroying a ChildProcess that still runs kills its group (SIGKILL) and reaps it, so no
// zombie or orphan outlives it. On Linux the child also gets PR_SET_PDEATHSIG(SIGTERM): it is
// told to stop when the thread that started it dies, e.g. a server crash. Hence: keep the
// spawning thread alive while the child runs (JobRunner's monitor thread does). The kernel may
// send that signal more than once (once per exiting thread the child is re-parented to), so a
// child that must checkpoint replaces it with a watcher that signals once (make_job_sink).
// Not thread-safe: one thread starts, reads, signals and reaps it (a JobRunner monitor).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ktl::jobs {

// Set in every child's environment to the pid of the process that started it, so the child can
// tell when that process (the server) has died even if it died before the child looked.
inline constexpr const char* kRunnerPidEnv = "KTL_JOB_RUNNER_PID";

struct ChildExit {
  bool exited = false;  // normal exit (then `code`), else killed by `signal`
  int code = 0;
  int signal = 0;
  bool ok() const { return exited && code == 0; }
  std::string describe() const;  // "exited with code 3", "was killed by signal 9 (SIGKILL)"
};

// True when process `pid` still runs as the child of job `job_id` (Linux: its command line has
// "--job-id <job_id>"; elsewhere: the pid exists). For jobs a crashed server left behind.
bool job_process_alive(int64_t pid, int64_t job_id);

class ChildProcess {
 public:
  // Starts `executable args...` (no shell). stdin is /dev/null; every other inherited fd is
  // closed; the signal mask is emptied and every caught signal and SIGPIPE reset to SIG_DFL
  // before any signal can reach the child, so it never runs this process's handlers. Throws
  // std::runtime_error if fork fails. If exec fails the child prints why and exits 127.
  ChildProcess(const std::string& executable, const std::vector<std::string>& args);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  int pid() const { return pid_; }
  // Waits up to timeout_ms for output and appends it to `out`. Returns false at end of output
  // (every writer closed the pipe).
  bool read_some(std::string& out, int timeout_ms);
  // Non-blocking: true once the child has exited (then exit_status() is valid).
  bool try_reap();
  bool reaped() const { return reaped_; }
  const ChildExit& exit_status() const { return exit_; }
  // Sends `sig` to the child's process group (the child and anything it started).
  void signal_group(int sig);

 private:
  int pid_ = 0;
  int fd_ = -1;
  bool reaped_ = false;
  ChildExit exit_;
};

}  // namespace ktl::jobs
