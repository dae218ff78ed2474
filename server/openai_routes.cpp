#include "server/openai_routes.h"

#include <httplib.h>

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/tokenizer/tokenizer.h"
#include "server/connection_stream.h"
#include "server/generation_session.h"
#include "server/route_util.h"

namespace ktl::server {
namespace {

using nlohmann::json;

std::shared_ptr<Engine> require_engine(ServerContext& ctx) {
  auto e = ctx.models.engine();
  if (e) return e;
  if (ctx.models.status().state == ModelState::kLoading)
    throw ApiError(503, "the model is still loading; retry shortly", "model_loading");
  throw ApiError(503, "no model is loaded (POST /v1/models/load, or start with --model)",
                 "model_not_loaded");
}

void handle_generation(ServerContext& ctx, const httplib::Request& req, httplib::Response& res,
                       bool chat) {
  if (ctx.draining) throw ApiError(503, "the server is shutting down", "shutting_down");
  CompletionRequest cr = parse_completion_request(req.body, chat, ctx.limits());
  const bool stream = cr.stream;
  auto session = std::make_shared<GenerationSession>(
      ctx, chat ? "/v1/chat/completions" : "/v1/completions", stream);
  if (!session->admitted())
    throw ApiError(429,
                   "too many concurrent generation requests (limit " +
                       std::to_string(ctx.cfg.max_concurrent_streams) + "); retry later",
                   "too_many_requests");
  session->start(std::move(cr));
  res.set_header("X-Request-Id", session->id());
  if (!stream) {
    // httplib gives a plain handler no socket: the worker's ConnectionStream tells whether
    // the client has gone, so an abandoned request stops holding KV blocks and its slot.
    ConnectionStream* conn = ConnectionStream::current();
    res.set_content(session->run_to_completion([conn] { return conn && conn->peer_closed(); }),
                    "application/json");
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider("text/event-stream", [session](size_t, httplib::DataSink& sink) {
    try {
      bool finished = false;
      std::string bytes = session->next_stream_bytes(std::chrono::milliseconds(200), &finished);
      if (!bytes.empty() && !sink.write(bytes.data(), bytes.size())) {
        session->cancel_all("client_closed");  // the client went away: free its blocks
        return false;
      }
      if (finished) sink.done();
      return true;
    } catch (const std::exception& e) {
      spdlog::error("{} stream: {}", session->id(), e.what());
      session->cancel_all("error");
      return false;
    }
  });
}

void handle_models(ServerContext& ctx, httplib::Response& res) {
  json data = json::array();
  const ModelStatus st = ctx.models.status();
  if (st.serving) {
    data.push_back({{"id", st.model_name},
                    {"object", "model"},
                    {"created", static_cast<int64_t>(std::time(nullptr))},
                    {"owned_by", "ktl"},
                    {"root", st.model_dir},
                    {"max_model_len", st.max_context}});
    // LoRA adapters as models of their own, named in "model" (vLLM's shape: parent = the base).
    if (auto e = ctx.models.engine()) {
      for (const AdapterInfo& a : e->adapters()) {
        if (a.draining) continue;  // new requests cannot name it any more
        data.push_back({{"id", a.name},
                        {"object", "model"},
                        {"created", static_cast<int64_t>(std::time(nullptr))},
                        {"owned_by", "ktl"},
                        {"root", a.path},
                        {"parent", st.model_name},
                        {"max_model_len", st.max_context}});
      }
    }
  }
  res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
}

void handle_tokenize(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  TokenizeRequest tr = parse_tokenize_request(req.body);
  auto engine = require_engine(ctx);
  const Tokenizer& tok = engine->tokenizer();
  std::vector<int> ids = tok.encode(tr.text);
  if (tr.add_bos) ids.insert(ids.begin(), tok.bos_id());
  json pieces = json::array();
  for (int id : ids) pieces.push_back(tok.id_to_piece(id));
  json out = {{"tokens", ids},
              {"count", ids.size()},
              {"pieces", pieces},
              {"max_model_len", engine->max_context()}};
  res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void handle_detokenize(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto engine = require_engine(ctx);
  const Tokenizer& tok = engine->tokenizer();
  std::vector<int> ids = parse_detokenize_request(req.body, tok.vocab_size());
  json out = {{"text", tok.decode(ids)}};
  res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// llama.cpp server's shapes: {content, add_special?, with_pieces?} -> {tokens}, where a token is
// an id, or {id, piece} with the piece as text (or its bytes when not whole UTF-8).
void handle_llama_tokenize(ServerContext& ctx, const httplib::Request& req,
                           httplib::Response& res) {
  json body = parse_json_object(req.body);
  const auto content = body.find("content");
  if (content == body.end() || !content->is_string() || !is_valid_utf8(content->get<std::string>()))
    throw ApiError(400, "'content' must be a UTF-8 string", "invalid_request", "content");
  auto flag = [&](const char* key) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) return false;
    if (!it->is_boolean())
      throw ApiError(400, std::string("'") + key + "' must be a boolean", "invalid_request", key);
    return it->get<bool>();
  };
  const bool add_special = flag("add_special"), with_pieces = flag("with_pieces");
  auto engine = require_engine(ctx);
  const Tokenizer& tok = engine->tokenizer();
  std::vector<int> ids = tok.encode(content->get<std::string>());
  if (add_special) ids.insert(ids.begin(), tok.bos_id());
  json tokens = json::array();
  for (int id : ids) {
    if (!with_pieces) {
      tokens.push_back(id);
      continue;
    }
    const std::string b = tok.token_bytes(id);
    json piece = is_valid_utf8(b) ? json(b) : json(std::vector<uint8_t>(b.begin(), b.end()));
    tokens.push_back({{"id", id}, {"piece", piece}});
  }
  res.set_content(json{{"tokens", tokens}}.dump(-1, ' ', false, json::error_handler_t::replace),
                  "application/json");
}

void handle_llama_detokenize(ServerContext& ctx, const httplib::Request& req,
                             httplib::Response& res) {
  auto engine = require_engine(ctx);
  const Tokenizer& tok = engine->tokenizer();
  std::vector<int> ids = parse_detokenize_request(req.body, tok.vocab_size());
  json out = {{"content", tok.decode(ids)}};
  res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

}  // namespace

void register_openai_routes(httplib::Server& server, ServerContext& ctx) {
  server.Post("/v1/completions",
              guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                handle_generation(ctx, req, res, false);
              }));
  server.Post("/v1/chat/completions",
              guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                handle_generation(ctx, req, res, true);
              }));
  server.Get("/v1/models", guarded([&ctx](const httplib::Request&, httplib::Response& res) {
               handle_models(ctx, res);
             }));
  server.Post("/v1/tokenize", guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                handle_tokenize(ctx, req, res);
              }));
  server.Post("/tokenize", guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                handle_llama_tokenize(ctx, req, res);
              }));
  server.Post("/detokenize", guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                handle_llama_detokenize(ctx, req, res);
              }));
  server.Post("/v1/detokenize",
              guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                handle_detokenize(ctx, req, res);
              }));
}

}  // namespace ktl::server
