#include "server/connection_stream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "server/header_validation.h"

namespace ktl::server {
namespace {

using Clock = std::chrono::steady_clock;
thread_local ConnectionStream* t_current = nullptr;

// httplib's own header line limit, plus CRLF. A request line may be longer so that httplib
// still answers 414 for targets over its 8192 bytes; past kMaxRequestLineBytes we stop reading.
constexpr size_t kMaxLineBytes = 8192 + 2;
constexpr size_t kMaxRequestLineBytes = 64 * 1024;

std::string duration_text(long long ms) {
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

int poll_one(int fd, short events, int timeout_ms, short* revents) {
  pollfd p{fd, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  *revents = p.revents;
  return r;
}

void address_of(const sockaddr_storage& a, std::string& ip, int& port) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
    port = ntohs(v6->sin6_port);
  }
  ip = host;
}

}  // namespace

ConnectionStream::ConnectionStream(int fd, ConnectionLimits limits)
    : fd_(fd), limits_(limits), previous_(t_current) {
  t_current = this;
  begin_request();
}

ConnectionStream::~ConnectionStream() {
  t_current = previous_;
}

ConnectionStream* ConnectionStream::current() {
  return t_current;
}

void ConnectionStream::begin_request() {
  phase_ = Phase::kRequestLine;
  line_.clear();
  header_lines_ = 0;
  body_bytes_ = 0;
  problem_ = {};
  deadline_ = Clock::now() + std::chrono::milliseconds(limits_.request_timeout_ms);
}

bool ConnectionStream::wait_for_request(int timeout_ms) {
  if (buf_begin_ < buf_end_) return true;
  short revents = 0;
  return poll_one(fd_, POLLIN, timeout_ms, &revents) > 0;
}

void ConnectionStream::fail(int status, std::string message) {
  if (problem_.status == 0) problem_ = {status, std::move(message)};
  close_after_response_ = true;  // the rest of this request is unread
}

bool ConnectionStream::peer_closed() const {
  short revents = 0;
  const int r = poll_one(fd_, POLLRDHUP, 0, &revents);
  return r < 0 || (revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

bool ConnectionStream::is_readable() const {
  if (buf_begin_ < buf_end_) return true;
  short revents = 0;
  return poll_one(fd_, POLLIN, limits_.read_timeout_ms, &revents) > 0;
}

bool ConnectionStream::is_writable() const {
  if (peer_closed()) return false;  // lets streaming providers stop as soon as a client leaves
  short revents = 0;
  return poll_one(fd_, POLLOUT, limits_.write_timeout_ms, &revents) > 0 && (revents & POLLOUT) != 0;
}

// Refills the empty buffer; false at end of stream, on error, or on a timeout (a problem).
bool ConnectionStream::fill() {
  const auto now = Clock::now();
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - now).count() + 1;
  if (now >= deadline_ || left <= 0) {
    fail(408, "the request did not arrive within " + duration_text(limits_.request_timeout_ms));
    return false;
  }
  const int wait = static_cast<int>(std::min<long long>(limits_.read_timeout_ms, left));
  short revents = 0;
  const int r = poll_one(fd_, POLLIN, wait, &revents);
  if (r == 0) {
    fail(408, Clock::now() >= deadline_
                  ? "the request did not arrive within " + duration_text(limits_.request_timeout_ms)
                  : "the client sent nothing for " + duration_text(wait));
    return false;
  }
  if (r < 0) return false;
  ssize_t n;
  do {
    n = ::recv(fd_, buf_, sizeof buf_, 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  buf_begin_ = 0;
  buf_end_ = static_cast<size_t>(n);
  return true;
}

ssize_t ConnectionStream::read(char* ptr, size_t size) {
  if (problem_.status != 0) return -1;
  if (buf_begin_ == buf_end_ && !fill()) return problem_.status != 0 ? -1 : 0;
  const size_t n = std::min(size, buf_end_ - buf_begin_);
  if (!scan(buf_ + buf_begin_, n)) return -1;
  std::memcpy(ptr, buf_ + buf_begin_, n);
  buf_begin_ += n;
  return static_cast<ssize_t>(n);
}

bool ConnectionStream::scan(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (phase_ == Phase::kBody) {
      body_bytes_ += n - i;
      if (body_bytes_ <= limits_.max_body_bytes) return true;
      fail(413,
           "request body too large (limit " + std::to_string(limits_.max_body_bytes) + " bytes)");
      return false;
    }
    line_ += p[i];
    if (line_.size() > (phase_ == Phase::kRequestLine ? kMaxRequestLineBytes : kMaxLineBytes)) {
      fail(400, "a request or header line is too long");
      return false;
    }
    if (p[i] != '\n') continue;
    if (phase_ == Phase::kRequestLine) {
      check_request_line();
      phase_ = Phase::kHeaders;
      line_.clear();
    } else if (!scan_header_line()) {
      return false;
    }
  }
  return true;
}

// A bad request line is let through (httplib reads it whole, then asks for the headers,
// which fail on the recorded problem): httplib then answers 400 and the error handler tells why.
void ConnectionStream::check_request_line() {
  std::string_view l(line_);
  bool ok = l.size() >= 2 && l[l.size() - 2] == '\r';
  for (size_t i = 0; ok && i + 2 < l.size(); ++i) {
    const auto c = static_cast<unsigned char>(l[i]);
    ok = c >= 0x20 && c != 0x7f;
  }
  if (!ok) fail(400, "malformed request line (control byte, or not ended by CRLF)");
}

bool ConnectionStream::scan_header_line() {
  std::string_view l(line_);
  if (l.size() < 2 || l[l.size() - 2] != '\r') {
    fail(400, "header lines must end with CRLF");
    return false;
  }
  l.remove_suffix(2);
  if (l.empty()) {
    phase_ = Phase::kBody;
  } else if (++header_lines_ > limits_.max_header_lines) {
    fail(400, "more than " + std::to_string(limits_.max_header_lines) + " header lines");
    return false;
  } else if (std::string why = header_line_problem(l); !why.empty()) {
    fail(400, "malformed request header: " + why);
    return false;
  }
  line_.clear();
  return true;
}

ssize_t ConnectionStream::write(const char* ptr, size_t size) {
  short revents = 0;
  if (poll_one(fd_, POLLOUT, limits_.write_timeout_ms, &revents) <= 0) return -1;
  ssize_t n;
  do {
    n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

void ConnectionStream::get_remote_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) address_of(a, ip, port);
}

void ConnectionStream::get_local_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) address_of(a, ip, port);
}

}  // namespace ktl::server
