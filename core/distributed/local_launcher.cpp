#include "core/distributed/local_launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

namespace ktl {

namespace {

std::atomic<int> g_signals{0};  // SIGTERM/SIGINT received by the launcher

extern "C" void on_launcher_signal(int) {
  g_signals.fetch_add(1);
}

std::string status_text(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended (status " + std::to_string(status) + ")";
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

pid_t spawn_rank(const LaunchConfig& c, int local_rank, int port,
                 const std::vector<std::string>& argv) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0)
    throw std::runtime_error("fork failed starting local rank " + std::to_string(local_rank));
  if (pid > 0) return pid;
  // Child: only async-signal-safe-ish work until exec (setenv allocates; fine before threads).
  // Its own process group: a signal to the launcher's group (Ctrl-C, the jobs daemon's
  // SIGTERM) reaches the ranks once, forwarded, not twice (a second signal kills a trainer).
  setpgid(0, 0);
#if defined(__linux__)
  // ...and it dies with the launcher, even when the launcher is SIGKILLed.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);
#endif
  const int world = c.nnodes * c.nproc_per_node;
  setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
  setenv("RANK", std::to_string(c.node_rank * c.nproc_per_node + local_rank).c_str(), 1);
  setenv("LOCAL_RANK", std::to_string(local_rank).c_str(), 1);
  setenv("LOCAL_WORLD_SIZE", std::to_string(c.nproc_per_node).c_str(), 1);
  setenv("GROUP_RANK", std::to_string(c.node_rank).c_str(), 1);
  setenv("MASTER_ADDR", c.master_addr.c_str(), 1);
  setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  std::vector<char*> args;
  std::vector<std::string> copy = argv;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  execv(args[0], args.data());
  _exit(127);
}

}  // namespace

void LaunchConfig::validate() const {
  if (nproc_per_node < 1) throw std::invalid_argument("--nproc-per-node must be >= 1");
  if (nnodes < 1) throw std::invalid_argument("--nnodes must be >= 1");
  if (node_rank < 0 || node_rank >= nnodes)
    throw std::invalid_argument("--node-rank must be in [0, --nnodes)");
  if (master_port < 0 || master_port > 65535)
    throw std::invalid_argument("--master-port must be in 0..65535");
  if (master_port == 0 && nnodes > 1)
    throw std::invalid_argument("--master-port is required with --nnodes > 1");
  if (master_addr.empty()) throw std::invalid_argument("--master-addr is empty");
}

int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    throw std::runtime_error("could not find a free local port");
  }
  close(fd);
  return ntohs(a.sin_port);
}

int launch_local_ranks(const LaunchConfig& c, const std::vector<std::string>& argv,
                       std::string* error) {
  c.validate();
  if (argv.empty()) throw std::invalid_argument("launch_local_ranks: empty command");
  const int port = c.master_port > 0 ? c.master_port : free_local_port();
  g_signals.store(0);
  struct sigaction sa {
  }, old_term{}, old_int{};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGINT, &sa, &old_int);

  std::vector<pid_t> pids;
  for (int r = 0; r < c.nproc_per_node; ++r) pids.push_back(spawn_rank(c, r, port, argv));
  std::vector<bool> alive(pids.size(), true);
  int live = int(pids.size()), result = 0;
  int forwarded = 0;  // signals passed on so far
  std::chrono::steady_clock::time_point failed_at{};
  while (live > 0) {
    int status = 0;
    const pid_t done = waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      for (size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] != done || !alive[i]) continue;
        alive[i] = false;
        --live;
        if (exit_code(status) != 0 && result == 0) {
          result = exit_code(status);
          failed_at = std::chrono::steady_clock::now();
          if (error)
            *error = "local rank " + std::to_string(i) + " (rank " +
                     std::to_string(c.node_rank * c.nproc_per_node + int(i)) + ", pid " +
                     std::to_string(done) + ") " + status_text(status);
        }
      }
      continue;
    }
    // Each signal once to every rank: the first stops them with a checkpoint, a second kills.
    if (const int n = g_signals.load(); n > forwarded) {
      forwarded = n;
      for (size_t i = 0; i < pids.size(); ++i)
        if (alive[i]) kill(pids[i], SIGTERM);
    }
    if (result != 0 &&
        std::chrono::steady_clock::now() - failed_at > std::chrono::seconds(c.grace_seconds)) {
      for (size_t i = 0; i < pids.size(); ++i)
        if (alive[i]) kill(pids[i], SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  return result;
}

}  // namespace ktl
