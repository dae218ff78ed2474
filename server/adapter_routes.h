// LoRA adapter routes (the engine serves adapters beside its base model, core/engine/engine.h):
//   POST   /v1/adapters         {"name": NAME, "path": DIR} loads a PEFT adapter directory (the
//                               path confined to the allowed roots, as /v1/models/load): 200 with
//                               the adapter; 400 bad name, path outside the roots or bad files
//                               (the loader's message); 404 no such directory; 409 name in use;
//                               503 no model
//   GET    /v1/adapters         {"object":"list","data":[{name, path, rank, alpha, targets, state
//                               ("ready"|"draining"), in_flight, requests_total, load_ms, bytes}]}
//   DELETE /v1/adapters/{name}  200 unloaded; 202 draining (requests in flight finish on it, then
//                               it is freed); 404 unknown
// Requests name an adapter in "model" (server/generation_session.cpp); GET /v1/models lists them.
// Thread-safety: handlers only touch ServerContext and the engine's thread-safe API.
#pragma once

namespace httplib {
class Server;
}

namespace ktl::server {

struct ServerContext;

void register_adapter_routes(httplib::Server& server, ServerContext& ctx);

}  // namespace ktl::server
