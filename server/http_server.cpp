#include "server/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "server/auth.h"
#include "server/jobs_integration.h"
#include "server/openai_routes.h"
#include "server/route_util.h"
#include "server/serving_routes.h"

namespace ktl::server {

void check_bind_safety(const ServerConfig& cfg) {
  if (is_loopback_host(cfg.host) || !cfg.api_key.empty() || cfg.insecure) return;
  throw std::runtime_error("refusing to listen on " + cfg.host +
                           " without an API key: pass --api-key (or set KTL_API_KEY), or "
                           "--insecure to expose the API anyway");
}

HttpServer::HttpServer(ServerConfig cfg, ModelManager::Loader loader)
    : ctx_(std::make_unique<ServerContext>(std::move(cfg), std::move(loader))),
      http_(std::make_unique<httplib::Server>()) {}

HttpServer::~HttpServer() {
  shutdown();
}

ServerContext& HttpServer::context() {
  return *ctx_;
}

namespace {

bool is_generation_path(const std::string& p) {
  return p == "/v1/completions" || p == "/v1/chat/completions";
}

std::string default_error_message(const httplib::Request& req, int status, size_t max_body) {
  switch (status) {
    case 404:
      return "not found: " + req.path;
    case 405:
      return "method not allowed: " + req.method + " " + req.path;
    case 413:
      return "request body too large (limit " + std::to_string(max_body) + " bytes)";
    case 414:
      return "request URI too long";
    default:
      return "HTTP error " + std::to_string(status);
  }
}

}  // namespace

void HttpServer::install_handlers() {
  ServerContext& ctx = *ctx_;
  // Pool: one worker per allowed generation stream plus headroom for everything else
  // (health checks, the dashboard, job event streams). The default of 8 blocks the 9th stream.
  const size_t workers = static_cast<size_t>(ctx.cfg.max_concurrent_streams) + 16;
  http_->new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  http_->set_payload_max_length(ctx.cfg.max_body_bytes);
  http_->set_read_timeout(10, 0);
  http_->set_write_timeout(10, 0);

  http_->set_pre_routing_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/v1/", 0) != 0 && req.path != "/v1")
      return httplib::Server::HandlerResponse::Unhandled;
    return ctx.authorize(req, res) ? httplib::Server::HandlerResponse::Unhandled
                                   : httplib::Server::HandlerResponse::Handled;
  });
  httplib::Server::HandlerWithResponse on_error = [&ctx](const httplib::Request& req,
                                                         httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, res.status, default_error_message(req, res.status, ctx.cfg.max_body_bytes));
    return httplib::Server::HandlerResponse::Handled;
  };
  http_->set_error_handler(std::move(on_error));
  http_->set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("{} {}: {}", req.method, req.path, what);
        send_error(res, 500, "internal error: " + what, "internal_error");
      });
  http_->set_logger([&ctx](const httplib::Request& req, const httplib::Response& res) {
    ctx.metrics.record_http_status(res.status);
    if (is_generation_path(req.path) && res.status == 200) return;  // the session logged it
    const bool quiet = req.method == "GET" && res.status < 400;
    spdlog::log(quiet ? spdlog::level::debug : spdlog::level::info, "http {} {} status={} from={}",
                req.method, req.path, res.status, req.remote_addr);
  });
}

void HttpServer::register_routes() {
  register_openai_routes(*http_, *ctx_);
  JobCheckpointResolver resolver;
  if (jobs_) resolver = [this](int64_t id) { return jobs_->newest_checkpoint(id); };
  register_serving_routes(*http_, *ctx_, resolver);
  if (jobs_) jobs_->register_routes(*http_);
  register_static_routes(*http_, *ctx_);  // catch-all GET: last
}

int HttpServer::bind() {
  const ServerConfig& cfg = ctx_->cfg;
  check_bind_safety(cfg);
  jobs_ = JobsIntegration::create(*ctx_);
  install_handlers();
  register_routes();
  int port = cfg.port;
  if (port == 0) {
    port = http_->bind_to_any_port(cfg.host);
    if (port < 0) throw std::runtime_error("cannot listen on " + cfg.host + " (any port)");
  } else if (!http_->bind_to_port(cfg.host, port)) {
    throw std::runtime_error("cannot listen on " + cfg.host + ":" + std::to_string(port) +
                             " (in use, or not an address of this machine)");
  }
  if (!cfg.model_dir.empty()) ctx_->models.load_async(cfg.model_dir);
  if (jobs_) jobs_->start();
  phase_ = ServerPhase::kBound;
  return port;
}

bool HttpServer::serve() {
  phase_ = ServerPhase::kServing;
  const bool ok = http_->listen_after_bind();
  return ok;
}

void HttpServer::shutdown() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (phase_ == ServerPhase::kStopped) return;
  phase_ = ServerPhase::kDraining;
  ServerContext& ctx = *ctx_;
  ctx.draining = true;
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(ctx.cfg.drain_timeout_s);
  if (ctx.generations > 0)
    spdlog::info("draining {} in-flight request(s) (up to {} s)", ctx.generations.load(),
                 ctx.cfg.drain_timeout_s);
  while (ctx.generations > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (ctx.generations > 0) {
    spdlog::warn("drain timeout: ending {} request(s)", ctx.generations.load());
    ctx.abort_streams = true;
    const auto hard = Clock::now() + std::chrono::seconds(5);
    while (ctx.generations > 0 && Clock::now() < hard)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (jobs_) jobs_->stop();
  http_->stop();
  ctx.models.shutdown();
  phase_ = ServerPhase::kStopped;
}

}  // namespace ktl::server
