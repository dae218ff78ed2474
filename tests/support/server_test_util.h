// Test helpers for `ktl serve`: a tiny model built with the ktl CLI, and a server child process
// started on 127.0.0.1 with a free port and stopped by pid. Header-only; no LibTorch.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <strings.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

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

// `ktl serve --port 0 ...` as a child process; stdout+stderr go to a log file. Serves fp32
// unless `args` name a --dtype: the tests compare against in-process fp32 forwards, and the
// serving default (int8) would move them by quantization.
class ServerProcess {
 public:
  ServerProcess(const std::vector<std::string>& args, const std::string& log_path)
      : log_path_(log_path) {
    std::vector<std::string> argv_s{ktl_bin(), "serve", "--host", "127.0.0.1", "--port", "0"};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    if (std::find(args.begin(), args.end(), "--dtype") == args.end())
      argv_s.insert(argv_s.end(), {"--dtype", "fp32"});
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

  // Polls GET /health until it answers 200 with "ok"; false if the server dies or `timeout`
  // passes first (the model may still be loading).
  bool wait_healthy(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    if (port_ <= 0) return false;
    httplib::Client c("127.0.0.1", port_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (alive() && std::chrono::steady_clock::now() < deadline) {
      auto r = c.Get("/health");
      if (r && r->status == 200 && r->body.find("\"ok\"") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

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

// A raw TCP client on 127.0.0.1 for requests httplib's client will not send: malformed
// headers, slow or partial requests, abandoned connections.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) close();
  }
  ~RawConnection() { close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool ok() const { return fd_ >= 0; }
  bool send(const std::string& bytes) {
    size_t off = 0;
    while (fd_ >= 0 && off < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return fd_ >= 0;
  }
  // Reads until a whole response (headers + Content-Length body) is in, the peer closes, or
  // `timeout` passes. Returns what arrived.
  std::string read_response(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    std::string got;
    while (fd_ >= 0 && !complete(got)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            until - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char buf[8192];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  // True when the server closes the connection (EOF or reset) within `timeout`; bytes that
  // arrive first (an error response) are skipped.
  bool closed_by_peer(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (fd_ >= 0 && std::chrono::steady_clock::now() < until) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      if (recv(fd_, buf, sizeof buf, 0) <= 0) return true;
    }
    return false;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // The status code of a raw response ("HTTP/1.1 405 ..." -> 405), 0 if none.
  static int status_of(const std::string& response) {
    if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
    return std::atoi(response.substr(9, 3).c_str());
  }
  // A header's value in a raw response ("" if absent); names compare case-insensitively.
  static std::string header_of(const std::string& response, const std::string& name) {
    std::istringstream in(response.substr(0, response.find("\r\n\r\n")));
    std::string line;
    while (std::getline(in, line)) {
      if (line.size() <= name.size() || line[name.size()] != ':') continue;
      if (strncasecmp(line.c_str(), name.c_str(), name.size()) != 0) continue;
      std::string v = line.substr(name.size() + 1);
      while (!v.empty() && (v.front() == ' ')) v.erase(0, 1);
      while (!v.empty() && (v.back() == '\r' || v.back() == ' ')) v.pop_back();
      return v;
    }
    return "";
  }

 private:
  static bool complete(const std::string& got) {
    const size_t end = got.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    const std::string len = header_of(got, "Content-Length");
    return !len.empty() && got.size() >= end + 4 + std::stoul(len);
  }
  int fd_ = -1;
};

}  // namespace ktl::testing
