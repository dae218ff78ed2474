// Test helpers for `ktl serve`: a tiny model built with the ktl CLI, and a server child process
// started on 127.0.0.1 with a free port and stopped by pid. Header-only; no LibTorch.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/korean_fixture.h"

namespace ktl::testing {

inline std::string ktl_bin() {
  const char* b = std::getenv("KTL_BIN");
  return b ? b : KTL_BINARY_DIR "/ktl";
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Builds tokenizer + random-init checkpoint (vocab ~500, context 1024) under `dir` with the CLI.
// Returns the model dir; empty (with *why set) when the CLI cannot do it.
inline std::string make_tiny_served_model(const std::string& dir, std::string* why) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  write_lines(dir + "/corpus.txt", korean_sentences(2000));
  std::ofstream(dir + "/tiny.yaml") << "vocab_size: 500\nhidden_size: 64\nnum_layers: 2\n"
                                       "num_heads: 4\nnum_kv_heads: 2\nintermediate_size: 128\n"
                                       "max_seq_length: 1024\n";
  const std::string log = dir + "/make_model.log";
  std::string cmd = ktl_bin() + " train-tokenizer --input " + dir + "/corpus.txt --output " + dir +
                    "/tok --vocab-size 500 --character-coverage 0.99 --input-sentence-size 0 > " +
                    log + " 2>&1 && " + ktl_bin() + " init-model --model-config " + dir +
                    "/tiny.yaml --tokenizer " + dir + "/tok --out " + dir + "/model >> " + log +
                    " 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    *why = "building the tiny model failed: " + slurp(log);
    return "";
  }
  return dir + "/model";
}

// `ktl serve --port 0 ...` as a child process; stdout+stderr go to a log file.
class ServerProcess {
 public:
  ServerProcess(const std::vector<std::string>& args, const std::string& log_path)
      : log_path_(log_path) {
    std::vector<std::string> argv_s{ktl_bin(), "serve", "--host", "127.0.0.1", "--port", "0"};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      FILE* f = std::freopen(log_path.c_str(), "w", stdout);
      if (f) dup2(fileno(stdout), 2);
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    // The port line is the first line of stdout.
    const std::regex re("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 600 && port_ == 0 && alive(); ++i) {
      std::smatch m;
      std::string log = slurp(log_path_);
      if (std::regex_search(log, m, re))
        port_ = std::stoi(m[1]);
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~ServerProcess() { stop(); }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const { return slurp(log_path_); }

  bool alive() {
    if (exited_) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      exit_status_ = status;
      return false;
    }
    return true;
  }

  // SIGTERM, then wait up to `timeout`; SIGKILL after. Returns the exit code (-1 = killed).
  int stop(std::chrono::seconds timeout = std::chrono::seconds(40)) {
    if (pid_ <= 0) return -1;
    if (alive()) kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (alive() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (alive()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &exit_status_, 0);
      exited_ = true;
      pid_ = -1;
      return -1;
    }
    pid_ = -1;
    return WIFEXITED(exit_status_) ? WEXITSTATUS(exit_status_) : -1;
  }

 private:
  std::string log_path_;
  pid_t pid_ = -1;
  int port_ = 0;
  bool exited_ = false;
  int exit_status_ = 0;
};

}  // namespace ktl::testing
