// Serving-state and model-management routes, plus the static dashboard:
//   GET /health            200 {"status":"ok"} when a model serves; 503 {"status":"loading"} while
//                          the first model loads; 200 {"status":"no_model"} when none is loaded
//                          (the server itself is up: the dashboard and jobs API work); 503
//                          {"status":"load_failed","error"} when the last load failed and none
//                          serves.
//   GET /metrics           Prometheus text
//   GET /v1/serving        the JSON twin of /metrics for the dashboard
//   POST /v1/models/load   {"path": DIR} | {"job_id": N}, optional "wait": true
//   GET /*                 files under web_root (index.html at /), never outside it
// Thread-safety: handlers only touch ServerContext.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace httplib {
class Server;
}

namespace ktl::server {

struct ServerContext;

// Finds the checkpoint directory to serve for a training job (its newest checkpoint);
// throws ApiError (404 unknown job, 409 no checkpoint yet). Null = job loading unsupported.
using JobCheckpointResolver = std::function<std::string(int64_t job_id)>;

void register_serving_routes(httplib::Server& server, ServerContext& ctx,
                             JobCheckpointResolver resolve_job);
// The catch-all GET for static files: register it after every other GET route.
void register_static_routes(httplib::Server& server, ServerContext& ctx);

}  // namespace ktl::server
