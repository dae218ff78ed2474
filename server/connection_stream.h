// One accepted HTTP connection as a cpp-httplib Stream, with the limits httplib 0.11.4 does not
// enforce itself: a deadline for reading a whole request (request line, headers, body), a
// per-read timeout, strict header lines (see header_validation.h) and a header count, and a
// cap on the raw body bytes whatever the transfer encoding (chunked bodies included).
// A read that breaks a limit fails, so httplib answers 400; the error handler asks problem()
// for the real status (408, 413, 400 with a reason).
//
// Thread-safety: one worker thread drives a connection. current() is that thread's connection,
// so route handlers can ask whether their client is still there (peer_closed()).
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <string>

namespace ktl::server {

struct ConnectionLimits {
  int read_timeout_ms = 5000;       // one read may wait this long for bytes
  int write_timeout_ms = 10000;     // one write may wait this long for buffer space
  int request_timeout_ms = 30000;   // a whole request must arrive within this
  size_t max_header_lines = 64;     // header lines per request
  size_t max_body_bytes = 1 << 20;  // raw body bytes (chunk framing included)
};

struct StreamProblem {
  int status = 0;  // 0 = none; else 400, 408 or 413
  std::string message;
};

class ConnectionStream : public httplib::Stream {
 public:
  ConnectionStream(int fd, ConnectionLimits limits);
  ~ConnectionStream() override;
  ConnectionStream(const ConnectionStream&) = delete;
  ConnectionStream& operator=(const ConnectionStream&) = delete;

  // A new request starts: arms its deadline, expects a request line.
  void begin_request();
  // Waits up to `timeout_ms` for the next request's first byte; false on timeout or close.
  bool wait_for_request(int timeout_ms);
  // The first limit this request broke, if any.
  const StreamProblem& problem() const { return problem_; }
  // The client closed its side (or the socket failed): nobody will read a response.
  bool peer_closed() const;
  // Set when unread request bytes may remain (e.g. a 413 before the body): do not reuse.
  void set_close_after_response() { close_after_response_ = true; }
  bool close_after_response() const { return close_after_response_; }

  // This worker thread's connection (null outside a request, or in a route probe).
  static ConnectionStream* current();

  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  int socket() const override { return fd_; }

 private:
  enum class Phase { kRequestLine, kHeaders, kBody };
  bool fill();
  bool scan(const char* p, size_t n);
  void check_request_line();
  bool scan_header_line();
  void fail(int status, std::string message);

  int fd_;
  ConnectionLimits limits_;
  ConnectionStream* previous_;  // current() before this one (nested servers in tests)
  char buf_[4096];
  size_t buf_begin_ = 0, buf_end_ = 0;
  Phase phase_ = Phase::kRequestLine;
  std::string line_;  // the header line being scanned
  size_t header_lines_ = 0;
  size_t body_bytes_ = 0;
  std::chrono::steady_clock::time_point deadline_;
  StreamProblem problem_;
  bool close_after_response_ = false;
};

}  // namespace ktl::server
