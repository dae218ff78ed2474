// The response half of server/openai_protocol.h: bodies, stream chunks (log-probabilities and
// tool calls included) and Server-Sent Events, in OpenAI's shapes.
#include <nlohmann/json.hpp>

#include "server/openai_protocol.h"

namespace ktl::server {

using nlohmann::json;

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
    default:
      return "";
  }
}

namespace {

// "tool_calls" for a chat reply that was a call, null while unfinished.
json finish_json(FinishReason r, bool tool_calls) {
  if (r == FinishReason::kNone) return nullptr;
  return tool_calls && r == FinishReason::kStop ? "tool_calls" : finish_reason_name(r);
}

json usage_json(const Usage& u) {
  json j = {{"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"total_tokens", u.prompt_tokens + u.completion_tokens}};
  j["prompt_tokens_details"] = {{"cached_tokens", u.cached_prompt_tokens}};
  return j;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json base_json(const ResponseMeta& m, bool chunk) {
  const char* object =
      m.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", m.id},
          {"object", object},
          {"created", m.created},
          {"model", m.model},
          {"system_fingerprint", nullptr}};
}

}  // namespace

namespace {

json bytes_json(const std::vector<uint8_t>& b) {
  json a = json::array();
  for (uint8_t x : b) a.push_back(x);
  return a;
}

// Completions: {tokens, token_logprobs, top_logprobs, text_offset}; the rivals map includes
// the chosen token (as vLLM does), null for the first prompt token.
json completion_logprobs_json(const std::vector<LogprobEntry>& es) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const auto& e : es) {
    tokens.push_back(e.text);
    lps.push_back(e.logprob ? json(*e.logprob) : json(nullptr));
    if (!e.logprob) {
      tops.push_back(nullptr);
    } else {
      json m = json::object();
      for (const auto& [t, lp] : e.top)
        if (!m.contains(t)) m[t] = lp;
      if (!m.contains(e.text)) m[e.text] = *e.logprob;
      tops.push_back(std::move(m));
    }
    offs.push_back(e.text_offset);
  }
  return {
      {"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

// Chat: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
json chat_logprobs_json(const std::vector<LogprobEntry>& es) {
  json content = json::array();
  for (const auto& e : es) {
    json tops = json::array();
    for (size_t i = 0; i < e.top.size(); ++i)
      tops.push_back({{"token", e.top[i].first},
                      {"logprob", e.top[i].second},
                      {"bytes", bytes_json(i < e.top_bytes.size() ? e.top_bytes[i]
                                                                  : std::vector<uint8_t>{})}});
    content.push_back({{"token", e.text},
                       {"logprob", e.logprob.value_or(0.0f)},
                       {"bytes", bytes_json(e.bytes)},
                       {"top_logprobs", std::move(tops)}});
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

json logprobs_json(const ResponseMeta& meta, const std::vector<LogprobEntry>& es) {
  return meta.chat ? chat_logprobs_json(es) : completion_logprobs_json(es);
}

json tool_calls_json(const std::vector<ToolCall>& calls) {
  json a = json::array();
  for (const auto& c : calls)
    a.push_back({{"id", c.id},
                 {"type", "function"},
                 {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return a;
}

}  // namespace

std::string completion_response_json(const ResponseMeta& meta,
                                     const std::vector<ChoiceResult>& choices, const Usage& usage) {
  json j = base_json(meta, false);
  json arr = json::array();
  for (const auto& c : choices) {
    const bool calls = !c.tool_calls.empty();
    json cj = {{"index", c.index},
               {"finish_reason", finish_json(c.finish, calls)},
               {"logprobs", c.want_logprobs ? logprobs_json(meta, c.logprobs) : json(nullptr)}};
    if (meta.chat) {
      json msg = {{"role", "assistant"}, {"content", calls ? json(nullptr) : json(c.text)}};
      if (calls) msg["tool_calls"] = tool_calls_json(c.tool_calls);
      cj["message"] = std::move(msg);
    } else {
      cj["text"] = c.text;
    }
    arr.push_back(std::move(cj));
  }
  j["choices"] = std::move(arr);
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string stream_chunk_json(const ResponseMeta& meta, int index, const std::string& text,
                              FinishReason finish, bool role_delta, bool with_usage_null,
                              const std::vector<LogprobEntry>* logprobs, bool tool_calls) {
  json j = base_json(meta, true);
  const bool lp = logprobs && !logprobs->empty();
  json c = {{"index", index},
            {"finish_reason", finish_json(finish, tool_calls)},
            {"logprobs", lp ? logprobs_json(meta, *logprobs) : json(nullptr)}};
  if (meta.chat) {
    json delta = json::object();
    if (role_delta) delta["role"] = "assistant";
    if (!text.empty() || role_delta) delta["content"] = text;
    c["delta"] = std::move(delta);
  } else {
    c["text"] = text;
  }
  j["choices"] = json::array({c});
  if (with_usage_null) j["usage"] = nullptr;
  return dump(j);
}

std::string tool_call_chunk_json(const ResponseMeta& meta, int index, int call_index,
                                 const ToolCall& call, bool header, bool with_usage_null) {
  json j = base_json(meta, true);
  json tc = {{"index", call_index}};
  if (header) {
    tc["id"] = call.id;
    tc["type"] = "function";
    tc["function"] = {{"name", call.name}, {"arguments", ""}};
  } else {
    tc["function"] = {{"arguments", call.arguments}};
  }
  json c = {{"index", index},
            {"finish_reason", nullptr},
            {"logprobs", nullptr},
            {"delta", {{"tool_calls", json::array({tc})}}}};
  j["choices"] = json::array({c});
  if (with_usage_null) j["usage"] = nullptr;
  return dump(j);
}

std::string usage_chunk_json(const ResponseMeta& meta, const Usage& usage) {
  json j = base_json(meta, true);
  j["choices"] = json::array();
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string sse_event(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 8);
  out += "data: ";
  out += payload;
  out += "\n\n";
  return out;
}

}  // namespace ktl::server
