// `ktl serve`: one process serving generation (OpenAI-compatible), serving state, model
// management, the training-jobs API and the dashboard's static files.
//
// Lifecycle (ServerPhase): kCreated --bind()--> kBound --serve()--> kServing --shutdown()-->
// kDraining (new generation requests get 503; in-flight ones finish, bounded by
// drain_timeout_s, then are ended) --> kStopped (listener closed, engine and jobs shut down).
//
// Thread-safety: bind() and serve() are called from one thread; shutdown() may be called from
// any other thread (it blocks until draining is done), not from a signal handler.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "server/model_manager.h"
#include "server/server_config.h"

namespace ktl::server {

struct ServerContext;
class GuardedServer;
class JobsIntegration;

enum class ServerPhase { kCreated, kBound, kServing, kDraining, kStopped };

class HttpServer {
 public:
  // `loader` null = Engine::load.
  explicit HttpServer(ServerConfig cfg, ModelManager::Loader loader = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Refuses an unsafe config (non-loopback host without a key and without --insecure),
  // registers routes, opens the jobs store, starts loading --model, binds. Returns the port.
  // Throws std::runtime_error with a clear message.
  int bind();
  // Serves until shutdown(); returns false when the listener failed.
  bool serve();
  // Drains and stops (see the lifecycle above). Idempotent.
  void shutdown();

  ServerContext& context();
  ServerPhase phase() const { return phase_.load(); }

 private:
  void register_routes();
  void install_handlers();

  std::unique_ptr<ServerContext> ctx_;
  std::unique_ptr<GuardedServer> http_;
  std::unique_ptr<JobsIntegration> jobs_;
  std::atomic<ServerPhase> phase_{ServerPhase::kCreated};
  std::mutex shutdown_mu_;
};

// Throws when `cfg` would expose the API without a key (see ServerConfig::insecure).
void check_bind_safety(const ServerConfig& cfg);

}  // namespace ktl::server
