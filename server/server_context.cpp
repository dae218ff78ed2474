#include "server/server_context.h"

#include <httplib.h>

#include <cstdio>

#include "server/api_error.h"
#include "server/auth.h"

namespace ktl::server {
namespace fs = std::filesystem;

namespace {

EngineConfig engine_config(const ServerConfig& c) {
  EngineConfig e;
  e.kv_cache_mb = c.kv_cache_mb;
  e.max_queue = c.max_queue;
  e.device = c.device;
  e.dtype = c.dtype;
  e.max_num_seqs = c.max_num_seqs;
  e.num_threads = c.num_threads;
  e.verify_checksums = c.verify_checksums;
  e.speculative = c.speculative;
  return e;
}

// The --adapter adapters go into every engine of the --model directory, before it serves.
ModelManager::Loader with_adapters(const ServerConfig& c, ModelManager::Loader loader) {
  if (c.adapters.empty()) return loader;
  if (!loader) loader = default_engine_loader();
  return [loader, model_dir = c.model_dir, adapters = c.adapters](const std::string& dir,
                                                                  const EngineConfig& cfg) {
    std::unique_ptr<Engine> e = loader(dir, cfg);
    if (e && dir == model_dir) {
      for (const auto& [name, path] : adapters) {
        try {
          e->load_adapter(name, path);
        } catch (const std::exception& ex) {
          throw std::runtime_error("--adapter " + name + "=" + path + ": " + ex.what());
        }
      }
    }
    return e;
  };
}

}  // namespace

ServerContext::ServerContext(ServerConfig c, ModelManager::Loader loader)
    : cfg(std::move(c)), models(engine_config(cfg), with_adapters(cfg, std::move(loader))) {}

ProtocolLimits ServerContext::limits() const {
  ProtocolLimits l;
  l.max_tokens_limit = cfg.max_tokens_limit;
  return l;
}

std::vector<fs::path> ServerContext::allowed_roots() const {
  std::vector<fs::path> roots;
  std::error_code ec;
  if (!cfg.data_dir.empty()) roots.push_back(fs::absolute(cfg.data_dir, ec));
  for (const auto& r : cfg.allowed_roots) roots.push_back(fs::absolute(r, ec));
  if (!cfg.model_dir.empty()) roots.push_back(fs::absolute(cfg.model_dir, ec).parent_path());
  return roots;
}

bool ServerContext::authorize(const httplib::Request& req, httplib::Response& res) const {
  if (bearer_authorized(req.get_header_value("Authorization"), cfg.api_key)) return true;
  res.set_header("WWW-Authenticate", "Bearer");
  send_error(res, 401,
             req.has_header("Authorization") ? "invalid API key"
                                             : "missing API key (Authorization: Bearer <key>)",
             "invalid_api_key");
  return false;
}

std::string ServerContext::new_request_id() {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(next_request_id++));
  return buf;
}

void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& code, const std::string& param) {
  res.status = status;
  res.set_content(error_json(status, message, code, param), "application/json");
}

}  // namespace ktl::server
