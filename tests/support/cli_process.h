// Running the ktl binary from a test: spawn it with its output in a log, wait for its exit (or
// for a line in its log), read the log. Shared by the CLI tests that train, resume and kill.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace ktl::cli_process {

// $KTL_BIN (set by ctest), else the build tree's ktl.
inline std::string ktl_bin() {
  const char* b = std::getenv("KTL_BIN");
  return b ? b : std::string(KTL_BINARY_DIR) + "/ktl";
}

// What `run_ktl` saw: the exit code (-1 when killed by a signal) and stdout + stderr.
struct CliRun {
  int code;
  std::string out;
};

// Runs `ktl ARGS` through the shell (args as one string, quoted for the shell) and waits.
inline CliRun run_ktl(const std::string& args) {
  const std::string cmd = ktl_bin() + " " + args + " 2>&1";
  CliRun r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs ktl with args and extra environment, stdout+stderr to `log`; returns the pid.
// own_group: a new process group led by the child, as the jobs daemon starts `ktl train`.
inline pid_t spawn(const std::vector<std::string>& args, const std::string& log,
                   const std::map<std::string, std::string>& env = {}, bool own_group = false) {
  pid_t pid = fork();
  if (pid == 0) {
    if (own_group) setpgid(0, 0);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    std::string bin = ktl_bin();
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), 2);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Exit status (128 + signal when killed).
inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Exit status, or -1 when still running after `seconds`.
inline int wait_exit_for(pid_t pid, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// True once `text` appears in `log` (60 s at most); false if the process ends first.
inline bool wait_for_text(const std::string& log, const std::string& text, pid_t pid) {
  for (int i = 0; i < 6000; ++i) {
    if (slurp(log).find(text) != std::string::npos) return true;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;  // it ended first
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// The JSON objects a command printed, one per line starting with '{' (other lines skipped).
inline std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] == '{') v.push_back(nlohmann::json::parse(line));
  return v;
}

}  // namespace ktl::cli_process
