#include "server/guarded_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "server/api_error.h"
#include "server/elastic_thread_pool.h"
#include "server/route_probe.h"

namespace ktl::server {
namespace {

// Workers beyond the connection cap: they take the connections over it and answer 503 at
// once, so those never queue behind the admitted ones.
constexpr int kSpareWorkers = 8;
// Workers started with the server; more start as connections need them.
constexpr size_t kInitialWorkers = 16;
// How long a connection closed early is drained (see linger_before_close).
constexpr int kLingerMs = 2000;
// How long a refused connection (over the cap) waits for its request and for the client to close.
constexpr int kRejectWaitMs = 100;

// An in-memory request for route probes; what the routes write is dropped.
class ProbeStream : public httplib::Stream {
 public:
  explicit ProbeStream(std::string request) : in_(std::move(request)) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, in_.size() - pos_);
    in_.copy(ptr, n, pos_);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char*, size_t size) override { return static_cast<ssize_t>(size); }
  void get_remote_ip_and_port(std::string&, int&) const override {}
  void get_local_ip_and_port(std::string&, int&) const override {}
  socket_t socket() const override { return INVALID_SOCKET; }

 private:
  std::string in_;
  size_t pos_ = 0;
};

// After an early answer (413 before the body, 408) the client may still be sending: closing
// with unread bytes resets the connection and can destroy the answer before the client reads
// it. So stop writing, and read and drop what comes for a bounded time ("lingering close").
void linger_before_close(int fd, int budget_ms) {
  using Clock = std::chrono::steady_clock;
  ::shutdown(fd, SHUT_WR);
  const auto until = Clock::now() + std::chrono::milliseconds(budget_ms);
  char buf[16384];
  while (Clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) < 0 && errno != EINTR) return;
    if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return;
  }
}

// Over the cap: 503 at once. The client's request is usually in already; it is read and
// dropped first, because closing a socket with unread input resets the connection and the
// client would never see the 503. Short budgets: this worker must be free again at once.
void reject_busy(int fd, int max_connections) {
  pollfd p{fd, POLLIN, 0};
  char buf[16384];
  if (::poll(&p, 1, kRejectWaitMs) > 0)
    while (::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
  const std::string body =
      error_json(503, "too many open connections (limit " + std::to_string(max_connections) + ")",
                 "too_many_connections");
  const std::string out =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
      "Connection: close\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
    linger_before_close(fd, kRejectWaitMs);
}

}  // namespace

GuardedServer::GuardedServer(ConnectionLimits limits, int max_connections)
    : limits_(limits), max_connections_(max_connections) {
  const size_t workers = static_cast<size_t>(max_connections) + kSpareWorkers;
  new_task_queue = [workers] { return new ElasticThreadPool(kInitialWorkers, workers); };
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  const int open = ++open_;
  bool ret = false;
  if (open > max_connections_)
    reject_busy(sock, max_connections_);
  else
    ret = serve_connection(sock);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  --open_;
  return ret;
}

bool GuardedServer::serve_connection(int fd) {
  ConnectionStream strm(fd, limits_);
  bool ret = false;
  for (size_t left = keep_alive_max_count_; left > 0; --left) {
    if (!await_request(strm)) break;
    strm.begin_request();
    bool closed = false;
    ret = process_request(strm, left == 1, closed, nullptr);
    if (!ret || closed || strm.close_after_response()) break;
  }
  if (strm.close_after_response()) linger_before_close(fd, kLingerMs);
  return ret;
}

// Waits for a request's first byte up to the keep-alive timeout, in slices so that stop()
// is noticed.
bool GuardedServer::await_request(ConnectionStream& strm) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
  while (svr_sock_ != INVALID_SOCKET) {
    if (strm.wait_for_request(100)) return true;
    if (Clock::now() >= until) return false;
  }
  return false;
}

bool GuardedServer::widen_listen_backlog() {
  const int fd = svr_sock_;
  return fd != INVALID_SOCKET && ::listen(fd, SOMAXCONN) == 0;  // Linux: updates the backlog
}

std::vector<std::string> GuardedServer::allowed_methods(const std::string& target) {
  std::vector<std::string> out;
  for (const std::string m : {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
    RouteProbe probe;
    ProbeStream s(m + " " + target + " HTTP/1.1\r\nHost: probe\r\nContent-Length: 0\r\n\r\n");
    bool closed = false;
    process_request(s, true, closed, nullptr);
    if (!probe.matched()) continue;
    out.push_back(m);
    if (m == "GET") out.push_back("HEAD");
  }
  return out;
}

}  // namespace ktl::server
