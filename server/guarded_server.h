// cpp-httplib's Server with the connection handling replaced (its per-connection hook,
// process_and_close_socket, is virtual): a cap on open connections (beyond it: 503 and close),
// a worker per allowed connection (ElasticThreadPool: started on demand) so a new one never
// waits in a queue behind stalled ones,
// each connection read through a ConnectionStream (request deadline, strict headers, raw body
// cap), and allowed_methods() for 405 answers.
//
// Thread-safety: as httplib::Server; allowed_methods() may be called from any handler.
#pragma once

#include <httplib.h>

#include <atomic>
#include <string>
#include <vector>

#include "server/connection_stream.h"

namespace ktl::server {

class GuardedServer : public httplib::Server {
 public:
  GuardedServer(ConnectionLimits limits, int max_connections);

  // The methods with a route for `target` (a request target such as "/v1/jobs/3"), found by
  // replaying it through the routes under a RouteProbe. "HEAD" comes with "GET".
  std::vector<std::string> allowed_methods(const std::string& target);
  int open_connections() const { return open_.load(); }
  // httplib 0.11.4 listens with a backlog of 5 (compiled in): a burst of connections beyond it
  // waits for TCP retransmits (1 s, 2 s, ...). Called after binding, this raises it to SOMAXCONN.
  bool widen_listen_backlog();

 private:
  bool process_and_close_socket(socket_t sock) override;
  bool serve_connection(int fd);
  bool await_request(ConnectionStream& strm);

  ConnectionLimits limits_;
  int max_connections_;
  std::atomic<int> open_{0};
};

}  // namespace ktl::server
