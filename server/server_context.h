// State shared by the route handlers of one `ktl serve` process.
// Thread-safety: the atomics and the members' own guarantees (ModelManager and ServerMetrics are
// thread-safe); `cfg` is read-only after start.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "server/model_manager.h"
#include "server/openai_protocol.h"
#include "server/server_config.h"
#include "server/server_metrics.h"
#include "server/structured_output.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace ktl::server {

struct ServerContext {
  ServerContext(ServerConfig c, ModelManager::Loader loader);

  const ServerConfig cfg;
  ModelManager models;
  ServerMetrics metrics;
  GrammarProvider grammars;                // compiled structured-output grammars, LRU-cached
  std::atomic<int> generations{0};         // generation requests in flight (admission count)
  std::atomic<bool> draining{false};       // SIGTERM: refuse new generation requests
  std::atomic<bool> abort_streams{false};  // drain timed out: end the streams still open
  std::atomic<uint64_t> next_request_id{1};

  ProtocolLimits limits() const;
  // data_dir + allowed_roots (+ the --model dir's parent), absolute.
  std::vector<std::filesystem::path> allowed_roots() const;
  // Checks the Authorization header against cfg.api_key; on failure writes 401 into `res`.
  bool authorize(const httplib::Request& req, httplib::Response& res) const;
  // A short unique id for logs and response ids.
  std::string new_request_id();
};

// Writes an OpenAI-style JSON error into `res`.
void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& code = "", const std::string& param = "");

}  // namespace ktl::server
