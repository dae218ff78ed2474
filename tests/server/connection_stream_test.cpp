// ConnectionStream over a socketpair: the limits cpp-httplib 0.11.4 does not enforce itself.
#include "server/connection_stream.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

namespace ktl::server {
namespace {

using Clock = std::chrono::steady_clock;

struct Pair {
  Pair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }
  ~Pair() {
    for (int fd : fds)
      if (fd >= 0) close(fd);
  }
  void send(const std::string& s) {
    ASSERT_EQ(::send(fds[1], s.data(), s.size(), 0), (ssize_t)s.size());
  }
  int fds[2] = {-1, -1};
};

ConnectionLimits small_limits() {
  ConnectionLimits l;
  l.read_timeout_ms = 1000;
  l.request_timeout_ms = 2000;
  l.max_header_lines = 3;
  l.max_body_bytes = 10;
  return l;
}

// Reads everything available through `s` until a read fails or returns 0 or `n` bytes are in.
std::string read_n(ConnectionStream& s, size_t n, ssize_t* last) {
  std::string out;
  char c;
  while (out.size() < n && (*last = s.read(&c, 1)) == 1) out += c;
  return out;
}

TEST(ConnectionStream, PassesAWellFormedRequestAndCapsTheBody) {
  Pair p;
  ConnectionStream s(p.fds[0], small_limits());
  EXPECT_EQ(ConnectionStream::current(), &s);
  const std::string head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  p.send(head + "0123456789" + "X");
  ssize_t last = 0;
  EXPECT_EQ(read_n(s, head.size() + 10, &last), head + "0123456789");
  EXPECT_EQ(s.problem().status, 0);
  char c;
  EXPECT_EQ(s.read(&c, 1), -1);  // the 11th body byte
  EXPECT_EQ(s.problem().status, 413);
  EXPECT_TRUE(s.close_after_response());
}

TEST(ConnectionStream, RejectsMalformedAndTooManyHeaderLines) {
  for (const std::string& bad :
       {std::string("GET / HTTP/1.1\r\nno colon\r\n\r\n"),
        std::string("GET / HTTP/1.1\r\nA b: c\r\n\r\n"),
        std::string("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 27),
        std::string("GET / HTTP/1.1\r\nX: a\n\r\n"),
        std::string("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n")}) {
    Pair p;
    ConnectionStream s(p.fds[0], small_limits());
    p.send(bad);
    ssize_t last = 0;
    read_n(s, bad.size(), &last);
    EXPECT_EQ(last, -1) << bad;
    EXPECT_EQ(s.problem().status, 400) << bad;
  }
}

TEST(ConnectionStream, WholeRequestDeadlineEndsADribblingClient) {
  Pair p;
  ConnectionLimits l = small_limits();
  l.request_timeout_ms = 300;
  ConnectionStream s(p.fds[0], l);
  std::thread dribble([&] {
    const std::string line = "GET / HTTP/1.1\r\nA: 1\r\n";
    for (char c : line) {
      if (::send(p.fds[1], &c, 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(40));  // under the read timeout
    }
  });
  const auto t0 = Clock::now();
  ssize_t last = 0;
  read_n(s, 1000, &last);
  const auto took = Clock::now() - t0;
  dribble.join();
  EXPECT_EQ(last, -1);
  EXPECT_EQ(s.problem().status, 408);
  EXPECT_NE(s.problem().message.find("did not arrive within"), std::string::npos)
      << s.problem().message;
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::milliseconds(700));
}

TEST(ConnectionStream, ReadTimeoutAndNextRequestReset) {
  Pair p;
  ConnectionLimits l = small_limits();
  l.read_timeout_ms = 100;
  ConnectionStream s(p.fds[0], l);
  char c;
  EXPECT_EQ(s.read(&c, 1), -1);
  EXPECT_EQ(s.problem().status, 408);
  s.begin_request();
  EXPECT_EQ(s.problem().status, 0);
  p.send("G");
  EXPECT_EQ(s.read(&c, 1), 1);
}

TEST(ConnectionStream, SeesThePeerLeave) {
  Pair p;
  ConnectionStream s(p.fds[0], small_limits());
  EXPECT_FALSE(s.peer_closed());
  EXPECT_TRUE(s.is_writable());
  shutdown(p.fds[1], SHUT_WR);
  EXPECT_TRUE(s.peer_closed());
  EXPECT_FALSE(s.is_writable());
}

}  // namespace
}  // namespace ktl::server
