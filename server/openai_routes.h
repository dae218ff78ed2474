// OpenAI-compatible routes: POST /v1/completions, /v1/chat/completions, /v1/tokenize,
// /v1/detokenize; GET /v1/models. Authentication happens before routing (HttpServer).
// Thread-safety: handlers run on httplib's worker threads; all state is in ServerContext.
#pragma once

namespace httplib {
class Server;
}

namespace ktl::server {

struct ServerContext;

void register_openai_routes(httplib::Server& server, ServerContext& ctx);

}  // namespace ktl::server
