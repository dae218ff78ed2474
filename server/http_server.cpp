#include "server/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <strings.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <thread>

#include "server/adapter_routes.h"
#include "server/auth.h"
#include "server/guarded_server.h"
#include "server/header_validation.h"
#include "server/jobs_integration.h"
#include "server/openai_routes.h"
#include "server/route_probe.h"
#include "server/route_util.h"
#include "server/serving_routes.h"

namespace ktl::server {

void check_bind_safety(const ServerConfig& cfg) {
  if (is_loopback_host(cfg.host) || !cfg.api_key.empty() || cfg.insecure) return;
  throw std::runtime_error("refusing to listen on " + cfg.host +
                           " without an API key: pass --api-key (or set KTL_API_KEY), or "
                           "--insecure to expose the API anyway");
}

namespace {

ConnectionLimits connection_limits(const ServerConfig& cfg) {
  ConnectionLimits l;
  l.read_timeout_ms = cfg.read_timeout_s * 1000;
  l.request_timeout_ms = cfg.request_timeout_s * 1000;
  l.max_header_lines = static_cast<size_t>(cfg.max_header_lines);
  l.max_body_bytes = cfg.max_body_bytes;
  return l;
}

}  // namespace

HttpServer::HttpServer(ServerConfig cfg, ModelManager::Loader loader)
    : ctx_(std::make_unique<ServerContext>(std::move(cfg), std::move(loader))),
      // Never fewer connections than generation slots + 16: /health must get through.
      http_(std::make_unique<GuardedServer>(
          connection_limits(ctx_->cfg),
          std::max(ctx_->cfg.max_connections, ctx_->cfg.max_concurrent_streams + 16))) {}

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

bool iequals(const std::string& a, const char* b) {
  return strcasecmp(a.c_str(), b) == 0;
}

// What httplib 0.11.4 would read leniently or too long, checked once the headers are in and
// before any body byte is read.
std::optional<ApiError> header_error(const httplib::Request& req, size_t max_body) {
  const size_t lengths = req.get_header_value_count("Content-Length");
  const bool chunked = req.has_header("Transfer-Encoding");
  if (lengths > 1) return ApiError(400, "more than one Content-Length header");
  if (chunked && (lengths > 0 || req.get_header_value_count("Transfer-Encoding") > 1 ||
                  !iequals(req.get_header_value("Transfer-Encoding"), "chunked")))
    return ApiError(400, "Transfer-Encoding must be exactly 'chunked', without Content-Length");
  if (lengths == 1) {
    auto n = parse_decimal_int64(req.get_header_value("Content-Length"));
    if (!n) return ApiError(400, "Content-Length is not a non-negative integer");
    if (static_cast<uint64_t>(*n) > max_body)
      return ApiError(413, default_error_message(req, 413, max_body), "payload_too_large");
  }
  if (req.has_header("Last-Event-ID") &&
      !parse_decimal_int64(req.get_header_value("Last-Event-ID")))
    return ApiError(400, "Last-Event-ID must be a non-negative integer", "invalid_request",
                    "Last-Event-ID");
  return std::nullopt;
}

// Answers a request whose headers already break a rule, before any body byte is read; the
// body (if any) stays unread, so the connection is closed after the answer.
bool refuse_early(const httplib::Request& req, httplib::Response& res, size_t max_body) {
  if (RouteProbe::active()) return false;
  auto e = header_error(req, max_body);
  if (!e) return false;
  if (auto* conn = ConnectionStream::current()) conn->set_close_after_response();
  res.set_header("Connection", "close");
  send_error(res, e->status, e->what(), e->code, e->param);
  return true;
}

// Turns httplib's generic 400 after a failed read into what the ConnectionStream saw.
void apply_stream_problem(httplib::Response& res) {
  ConnectionStream* conn = ConnectionStream::current();
  if (!conn || conn->problem().status == 0 || res.status != 400) return;
  res.status = conn->problem().status;
  res.body.clear();
  res.set_header("Connection", "close");
  send_error(res, res.status, conn->problem().message);
}

// The JSON body of every error httplib raises itself (no route, failed read, ...).
httplib::Server::HandlerResponse answer_error(GuardedServer& http, size_t max_body,
                                              const httplib::Request& req, httplib::Response& res) {
  if (RouteProbe::active() || !res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
  apply_stream_problem(res);
  if (!res.body.empty()) return httplib::Server::HandlerResponse::Handled;
  if (res.status == 404) {  // no route for this method: 405 when another method has one
    const std::vector<std::string> allowed = http.allowed_methods(req.target);
    if (!allowed.empty()) {
      res.status = 405;
      std::string list;
      for (const auto& m : allowed) list += (list.empty() ? "" : ", ") + m;
      res.set_header("Allow", list);
    }
  }
  send_error(res, res.status, default_error_message(req, res.status, max_body));
  return httplib::Server::HandlerResponse::Handled;
}

}  // namespace

void HttpServer::install_handlers() {
  ServerContext& ctx = *ctx_;
  GuardedServer& http = *http_;
  http.set_payload_max_length(ctx.cfg.max_body_bytes);
  http.set_read_timeout(ctx.cfg.read_timeout_s, 0);
  http.set_write_timeout(10, 0);

  // A client that asks before sending its body (Expect: 100-continue) hears "no" before it
  // sends; httplib would say "100 Continue" first.
  http.set_expect_100_continue_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
    return refuse_early(req, res, ctx.cfg.max_body_bytes) ? res.status : 100;
  });
  http.set_pre_routing_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
    using R = httplib::Server::HandlerResponse;
    if (RouteProbe::active()) return R::Unhandled;
    if (refuse_early(req, res, ctx.cfg.max_body_bytes)) return R::Handled;
    if (req.path.rfind("/v1/", 0) != 0 && req.path != "/v1") return R::Unhandled;
    return ctx.authorize(req, res) ? R::Unhandled : R::Handled;
  });
  httplib::Server::HandlerWithResponse on_error = [&ctx, &http](const httplib::Request& req,
                                                                httplib::Response& res) {
    return answer_error(http, ctx.cfg.max_body_bytes, req, res);
  };
  http.set_error_handler(std::move(on_error));
  http.set_exception_handler(
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
  http.set_logger([&ctx](const httplib::Request& req, const httplib::Response& res) {
    if (RouteProbe::active()) return;
    ctx.metrics.record_http_status(res.status);
    if (is_generation_path(req.path) && res.status == 200) return;  // the session logged it
    const bool quiet = req.method == "GET" && res.status < 400;
    spdlog::log(quiet ? spdlog::level::debug : spdlog::level::info, "http {} {} status={} from={}",
                req.method, req.path, res.status, req.remote_addr);
  });
}

void HttpServer::register_routes() {
  register_openai_routes(*http_, *ctx_);
  register_adapter_routes(*http_, *ctx_);
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
  if (!http_->widen_listen_backlog()) spdlog::warn("could not raise the listen backlog");
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
