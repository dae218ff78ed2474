#include "server/serving_routes.h"

#include <httplib.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/base/file_util.h"
#include "server/allowed_paths.h"
#include "server/openai_protocol.h"
#include "server/route_util.h"
#include "server/static_files.h"

namespace ktl::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::optional<EngineStats> engine_stats(ServerContext& ctx, ModelInfo* info) {
  const ModelStatus st = ctx.models.status();
  info->name = st.model_name;
  info->state = model_state_name(st.state);
  info->max_context = st.max_context;
  if (auto e = ctx.models.engine()) {
    info->adapters = e->adapters();
    return e->stats();
  }
  return std::nullopt;
}

void handle_health(ServerContext& ctx, httplib::Response& res) {
  const ModelStatus st = ctx.models.status();
  json j;
  if (ctx.draining) {
    res.status = 503;
    j = {{"status", "shutting_down"}};
  } else if (st.serving) {
    j = {{"status", "ok"}, {"model", st.model_name}};
    if (st.state == ModelState::kLoading) j["loading"] = st.loading_dir;
  } else if (st.state == ModelState::kLoading) {
    res.status = 503;
    j = {{"status", "loading"}, {"loading", st.loading_dir}};
  } else if (!st.error.empty()) {
    res.status = 503;  // the last load failed and nothing serves: not healthy for a balancer
    j = {{"status", "load_failed"}, {"error", st.error}};
  } else {
    j = {{"status", "no_model"}};
  }
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

std::string resolve_model_path(ServerContext& ctx, const std::string& path) {
  auto p = confine_path(path, fs::absolute(ctx.cfg.data_dir), ctx.allowed_roots());
  if (!p)
    throw ApiError(400,
                   "path '" + path + "' is outside the allowed roots (--data-dir, --allow-path)",
                   "path_not_allowed", "path");
  std::error_code ec;
  if (!fs::is_directory(*p, ec))
    throw ApiError(404, "model directory '" + p->string() + "' does not exist", "model_not_found",
                   "path");
  return p->string();
}

void handle_load(ServerContext& ctx, const JobCheckpointResolver& resolve_job,
                 const httplib::Request& req, httplib::Response& res) {
  const json j = parse_json_object(req.body);
  std::string dir;
  if (j.contains("job_id") && !j.at("job_id").is_null()) {
    const json& id = j.at("job_id");
    if (!id.is_number_integer() || (id.is_number_unsigned() && id.get<uint64_t>() > INT64_MAX))
      throw ApiError(400, "'job_id' must be an integer", "invalid_request", "job_id");
    if (!resolve_job) throw ApiError(400, "this server has no jobs store", "invalid_request");
    dir = resolve_model_path(ctx, resolve_job(id.get<int64_t>()));
  } else if (j.contains("path") && j.at("path").is_string()) {
    dir = resolve_model_path(ctx, j.at("path").get<std::string>());
  } else {
    throw ApiError(400, "give 'path' (a model directory) or 'job_id'", "invalid_request", "path");
  }
  bool wait = j.contains("wait") && j.at("wait").is_boolean() && j.at("wait").get<bool>();
  if (!ctx.models.load_async(dir))
    throw ApiError(409, "a model is already being loaded", "load_in_progress");
  if (!wait) {
    res.status = 202;
    res.set_content(json{{"status", "loading"}, {"path", dir}}.dump(), "application/json");
    return;
  }
  ctx.models.wait_idle();
  const ModelStatus st = ctx.models.status();
  if (st.model_dir != dir || !st.serving)
    throw ApiError(400, "loading '" + dir + "' failed: " + st.error, "model_load_failed", "path");
  res.set_content(json{{"status", "ready"}, {"model", st.model_name}, {"path", dir}}.dump(),
                  "application/json");
}

}  // namespace

void register_serving_routes(httplib::Server& server, ServerContext& ctx,
                             JobCheckpointResolver resolve_job) {
  server.Get("/health", guarded([&ctx](const httplib::Request&, httplib::Response& res) {
               handle_health(ctx, res);
             }));
  server.Get("/metrics", guarded([&ctx](const httplib::Request&, httplib::Response& res) {
               ModelInfo info;
               auto stats = engine_stats(ctx, &info);
               res.set_content(ctx.metrics.render_prometheus(stats, info),
                               "text/plain; version=0.0.4; charset=utf-8");
             }));
  server.Get("/v1/serving", guarded([&ctx](const httplib::Request&, httplib::Response& res) {
               ModelInfo info;
               auto stats = engine_stats(ctx, &info);
               res.set_content(ctx.metrics.render_serving_json(stats, info), "application/json");
             }));
  server.Post("/v1/models/load",
              guarded([&ctx, resolve_job](const httplib::Request& req, httplib::Response& res) {
                handle_load(ctx, resolve_job, req, res);
              }));
}

void register_static_routes(httplib::Server& server, ServerContext& ctx) {
  auto static_file = [&ctx](const httplib::Request& req) -> std::optional<fs::path> {
    if (req.path.rfind("/v1/", 0) == 0 || ctx.cfg.web_root.empty()) return std::nullopt;
    return resolve_static_path(ctx.cfg.web_root, req.path);
  };
  auto serve = guarded([static_file](const httplib::Request& req, httplib::Response& res) {
    auto file = static_file(req);
    if (!file) {
      res.status = 404;  // no body: the error handler answers 404, or 405 for another method
      return;
    }
    res.set_content(read_file(*file), mime_type_for(*file));
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Content-Type-Options", "nosniff");
  });
  // The catch-all matches every GET; for 405 answers only an existing file counts as a route.
  server.Get("/.*", [static_file, serve](const httplib::Request& req, httplib::Response& res) {
    if (!RouteProbe::active()) return serve(req, res);
    if (static_file(req)) RouteProbe::note_match();
  });
}

}  // namespace ktl::server
