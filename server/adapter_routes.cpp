#include "server/adapter_routes.h"

#include <httplib.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "server/allowed_paths.h"
#include "server/openai_protocol.h"
#include "server/route_util.h"

namespace ktl::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::shared_ptr<Engine> serving_engine(ServerContext& ctx) {
  if (auto e = ctx.models.engine()) return e;
  if (ctx.models.status().state == ModelState::kLoading)
    throw ApiError(503, "the model is still loading; retry shortly", "model_loading");
  throw ApiError(503, "no model is loaded: adapters need a base model", "model_not_loaded");
}

json adapter_json(const AdapterInfo& a) {
  return {{"object", "adapter"},
          {"name", a.name},
          {"path", a.path},
          {"rank", a.rank},
          {"alpha", a.alpha},
          {"targets", a.targets},
          {"state", a.draining ? "draining" : "ready"},
          {"in_flight", a.in_flight},
          {"requests_total", a.requests_total},
          {"load_ms", a.load_ms},
          {"bytes", a.bytes}};
}

std::string string_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string() || it->get<std::string>().empty())
    throw ApiError(400, std::string("'") + key + "' must be a non-empty string", "invalid_request",
                   key);
  return it->get<std::string>();
}

void handle_load(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  const json j = parse_json_object(req.body);
  const std::string name = string_field(j, "name");
  const std::string path = string_field(j, "path");
  auto dir = confine_path(path, fs::absolute(ctx.cfg.data_dir), ctx.allowed_roots());
  if (!dir)
    throw ApiError(400,
                   "path '" + path + "' is outside the allowed roots (--data-dir, --allow-path)",
                   "path_not_allowed", "path");
  std::error_code ec;
  if (!fs::is_directory(*dir, ec))
    throw ApiError(404, "adapter directory '" + dir->string() + "' does not exist",
                   "adapter_not_found", "path");
  auto engine = serving_engine(ctx);
  AdapterInfo info;
  try {
    info = engine->load_adapter(name, dir->string());
  } catch (const AdapterConflict& e) {
    throw ApiError(409, e.what(), "adapter_exists", "name");
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, e.what(), "invalid_request", "name");
  } catch (const std::exception& e) {
    throw ApiError(400, std::string("cannot load the adapter: ") + e.what(), "adapter_invalid",
                   "path");
  }
  spdlog::info("adapter loaded: {} from {} (r = {}, {:.0f} ms)", info.name, info.path, info.rank,
               info.load_ms);
  res.set_content(adapter_json(info).dump(-1, ' ', false, json::error_handler_t::replace),
                  "application/json");
}

void handle_list(ServerContext& ctx, httplib::Response& res) {
  json data = json::array();
  if (auto e = ctx.models.engine())
    for (const AdapterInfo& a : e->adapters()) data.push_back(adapter_json(a));
  res.set_content(json{{"object", "list"}, {"data", data}}.dump(-1, ' ', false,
                                                                json::error_handler_t::replace),
                  "application/json");
}

void handle_unload(ServerContext& ctx, const std::string& name, httplib::Response& res) {
  auto engine = serving_engine(ctx);
  int in_flight = 0;
  for (const AdapterInfo& a : engine->adapters())
    if (a.name == name) in_flight = a.in_flight;
  switch (engine->unload_adapter(name)) {
    case AdapterUnload::kNotFound:
      throw ApiError(404, "adapter '" + name + "' is not loaded", "adapter_not_found", "name");
    case AdapterUnload::kUnloaded:
      spdlog::info("adapter unloaded: {}", name);
      res.set_content(json{{"name", name}, {"state", "unloaded"}}.dump(), "application/json");
      return;
    case AdapterUnload::kDraining:
      spdlog::info("adapter draining: {} ({} request(s) in flight)", name, in_flight);
      res.status = 202;
      res.set_content(json{{"name", name}, {"state", "draining"}, {"in_flight", in_flight}}.dump(),
                      "application/json");
      return;
  }
}

}  // namespace

void register_adapter_routes(httplib::Server& server, ServerContext& ctx) {
  server.Post("/v1/adapters", guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                handle_load(ctx, req, res);
              }));
  server.Get("/v1/adapters", guarded([&ctx](const httplib::Request&, httplib::Response& res) {
               handle_list(ctx, res);
             }));
  server.Delete(R"(/v1/adapters/([^/]+))",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                  handle_unload(ctx, req.matches[1].str(), res);
                }));
}

}  // namespace ktl::server
