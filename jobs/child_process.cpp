#include "jobs/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <stdexcept>
#ifdef __linux__
#include <sys/prctl.h>
#endif

extern char** environ;

namespace ktl::jobs {

namespace {

void make_pipe(int fds[2]) {
#ifdef __linux__
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + strerror(errno));
#else
  if (pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + strerror(errno));
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
}

// In the forked child: caught signals (the parent's handlers) and SIGPIPE back to SIG_DFL.
// Other ignored signals stay ignored, as exec would keep them (e.g. SIGHUP under nohup).
void reset_caught_signals() {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction cur {};
    if (sigaction(sig, nullptr, &cur) != 0) continue;  // e.g. glibc's reserved signals
    if (cur.sa_handler == SIG_DFL || (cur.sa_handler == SIG_IGN && sig != SIGPIPE)) continue;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, nullptr);
  }
}

// Runs in the forked child: only async-signal-safe calls until exec.
[[noreturn]] void exec_child(const char* exe, char* const* argv, char* const* envp, int write_fd,
                             pid_t parent, int max_fd) {
  setpgid(0, 0);
#ifdef __linux__
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(126);  // the parent died before prctl took effect
#endif
  // Every signal is still blocked (fork_with_signals_blocked): drop the parent's handlers
  // first, so a signal sent right after fork kills this child, never runs the server's handler.
  reset_caught_signals();
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  dup2(write_fd, 1);
  dup2(write_fd, 2);
  bool closed = false;
#if defined(__linux__) && defined(SYS_close_range)
  closed = syscall(SYS_close_range, 3U, ~0U, 0U) == 0;
#endif
  if (!closed)
    for (int fd = 3; fd < max_fd; ++fd) close(fd);
  execve(exe, argv, envp);
  const char* msg = "ktl job runner: cannot execute ";
  ssize_t ignored = write(2, msg, strlen(msg));
  ignored = write(2, exe, strlen(exe));
  const char* why = strerror(errno);  // not strictly async-signal-safe; glibc's is in practice
  ignored = write(2, ": ", 2);
  ignored = write(2, why, strlen(why));
  ignored = write(2, "\n", 1);
  (void)ignored;
  _exit(127);
}

// fork() with every signal blocked in this thread: until the child has reset its dispositions
// (exec_child), a signal to it (e.g. a cancel's SIGTERM to its group) would run this process's
// handlers in the child, and the server's handler writes to the server's self-pipe. The
// parent's mask is restored at once; the child starts with everything blocked.
pid_t fork_with_signals_blocked() {
  sigset_t every, saved;
  sigfillset(&every);
  pthread_sigmask(SIG_SETMASK, &every, &saved);
  pid_t pid = fork();
  if (pid != 0) pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  return pid;
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGKILL:
      return "SIGKILL; out of memory?";
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGABRT:
      return "SIGABRT";
    case SIGBUS:
      return "SIGBUS";
    default:
      return "";
  }
}

}  // namespace

bool job_process_alive(int64_t pid, int64_t job_id) {
  if (pid <= 0) return false;
#ifdef __linux__
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  if (!in) return false;
  std::vector<std::string> args;
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--job-id" && args[i + 1] == std::to_string(job_id)) return true;
  return false;
#else
  return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
#endif
}

std::string ChildExit::describe() const {
  if (exited) return "exited with code " + std::to_string(code);
  std::string n = signal_name(signal);
  return "was killed by signal " + std::to_string(signal) + (n.empty() ? "" : " (" + n + ")");
}

ChildProcess::ChildProcess(const std::string& executable, const std::vector<std::string>& args) {
  std::vector<std::string> all;
  all.push_back(executable);
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The environment plus who started it (see child_reporting.h: the parent watcher).
  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e)
    if (std::string(*e).rfind(std::string(kRunnerPidEnv) + "=", 0) != 0) env_strings.push_back(*e);
  env_strings.push_back(std::string(kRunnerPidEnv) + "=" + std::to_string(getpid()));
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  long open_max = sysconf(_SC_OPEN_MAX);
  int max_fd = open_max > 0 && open_max < 65536 ? static_cast<int>(open_max) : 65536;
  int fds[2];
  make_pipe(fds);
  pid_t parent = getpid();
  pid_t pid = fork_with_signals_blocked();
  if (pid < 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    throw std::runtime_error(std::string("fork: ") + strerror(e));
  }
  if (pid == 0) exec_child(all[0].c_str(), argv.data(), envp.data(), fds[1], parent, max_fd);
  setpgid(pid, pid);  // also here, so signal_group works before the child ran setpgid
  close(fds[1]);
  fd_ = fds[0];
  pid_ = pid;
}

ChildProcess::~ChildProcess() {
  if (!reaped_ && pid_ > 0) {
    signal_group(SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (fd_ >= 0) close(fd_);
}

bool ChildProcess::read_some(std::string& out, int timeout_ms) {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  int r = poll(&p, 1, timeout_ms);
  if (r <= 0) return true;  // timeout or EINTR: still open
  char buf[8192];
  ssize_t n = read(fd_, buf, sizeof(buf));
  if (n > 0) {
    out.append(buf, static_cast<size_t>(n));
    return true;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  close(fd_);
  fd_ = -1;
  return false;
}

bool ChildProcess::try_reap() {
  if (reaped_) return true;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return false;
  exit_.exited = WIFEXITED(status);
  exit_.code = exit_.exited ? WEXITSTATUS(status) : 0;
  exit_.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  reaped_ = true;
  return true;
}

void ChildProcess::signal_group(int sig) {
  // After the reap the pid may be reused: only signal a live (or zombie) child.
  if (pid_ <= 0 || reaped_) return;
  if (kill(-pid_, sig) != 0) kill(pid_, sig);
}

}  // namespace ktl::jobs
