#include "server/openai_protocol.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace ktl::server {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message,
                      const std::string& code = "invalid_request") {
  throw ApiError(400, message, code, param);
}

// Any parse or type error nlohmann throws (out_of_range for 1e309, type_error for a field of
// the wrong type that slipped past a check) is the client's fault: 400, never 500.
template <class F>
auto client_json_errors(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const json::exception& e) {
    bad("", std::string("invalid request: ") + e.what(), "invalid_json");
  }
}

json parse_object(std::string_view body) {
  // nlohmann stops at a NUL as if the input ended there: the body must be one JSON value.
  if (body.find('\0') != std::string_view::npos)
    bad("", "request body contains a NUL byte", "invalid_json");
  json j;
  try {
    j = json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {  // parse_error, or out_of_range for e.g. 1e309
    if (!is_valid_utf8(body)) bad("", "request body is not valid UTF-8", "invalid_utf8");
    bad("", std::string("invalid JSON: ") + e.what(), "invalid_json");
  }
  if (!j.is_object()) bad("", "request body must be a JSON object", "invalid_json");
  return j;
}

// A present, non-null field.
const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

double get_number(const json& j, const char* key, double lo, double hi, double fallback) {
  const json* v = field(j, key);
  if (!v) return fallback;
  if (!v->is_number()) bad(key, std::string("'") + key + "' must be a number");
  double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(key, std::string("'") + key + "' must be between " + json(lo).dump() + " and " +
                 json(hi).dump());
  return x;
}

// Integers; a float with an integral value (e.g. 5.0) is accepted, 5.5 is not.
std::optional<long long> get_int(const json& j, const char* key, long long lo, long long hi) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  long long x = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() &&
        v->get<unsigned long long>() > static_cast<unsigned long long>(hi))
      bad(key, std::string("'") + key + "' must be at most " + std::to_string(hi));
    x = v->get<long long>();
  } else if (v->is_number_float()) {
    double d = v->get<double>();
    if (!std::isfinite(d) || std::floor(d) != d)
      bad(key, std::string("'") + key + "' must be an integer");
    if (d < -9e18 || d < static_cast<double>(lo))
      bad(key, std::string("'") + key + "' must be at least " + std::to_string(lo));
    if (d > 9e18 || d > static_cast<double>(hi))
      bad(key, std::string("'") + key + "' must be at most " + std::to_string(hi));
    x = static_cast<long long>(d);
  } else {
    bad(key, std::string("'") + key + "' must be an integer");
  }
  if (x < lo) bad(key, std::string("'") + key + "' must be at least " + std::to_string(lo));
  if (x > hi) bad(key, std::string("'") + key + "' must be at most " + std::to_string(hi));
  return x;
}

// A JSON integer in [0, INT_MAX]; unsigned values above LLONG_MAX must not wrap negative.
bool is_token_id(const json& t) {
  if (t.is_number_unsigned()) return t.get<unsigned long long>() <= std::numeric_limits<int>::max();
  return t.is_number_integer() && t.get<long long>() >= 0 &&
         t.get<long long>() <= std::numeric_limits<int>::max();
}

bool get_bool(const json& j, const char* key, bool fallback) {
  const json* v = field(j, key);
  if (!v) return fallback;
  if (!v->is_boolean()) bad(key, std::string("'") + key + "' must be a boolean");
  return v->get<bool>();
}

std::string checked_text(const json& v, const char* param, const char* what) {
  if (!v.is_string()) bad(param, std::string(what) + " must be a string");
  std::string s = v.get<std::string>();
  if (!is_valid_utf8(s)) bad(param, std::string(what) + " is not valid UTF-8", "invalid_utf8");
  return s;
}

void parse_prompt(const json& j, CompletionRequest* r, const ProtocolLimits& limits) {
  const json* p = field(j, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  auto add_text = [&](const json& v) {
    std::string s = checked_text(v, "prompt", "'prompt'");
    if (s.empty()) bad("prompt", "'prompt' is empty", "empty_prompt");
    r->prompts.push_back(std::move(s));
  };
  auto add_ids = [&](const json& arr) {
    std::vector<int> ids;
    for (const auto& t : arr) {
      if (!is_token_id(t)) bad("prompt", "token ids in 'prompt' must be non-negative integers");
      ids.push_back(t.get<int>());
    }
    if (ids.empty()) bad("prompt", "'prompt' is empty", "empty_prompt");
    r->prompt_ids.push_back(std::move(ids));
  };
  if (p->is_string()) {
    add_text(*p);
  } else if (p->is_array()) {
    if (p->empty()) bad("prompt", "'prompt' is empty", "empty_prompt");
    if ((*p)[0].is_number()) {
      add_ids(*p);
    } else {
      for (const auto& e : *p) {
        if (e.is_array())
          add_ids(e);
        else
          add_text(e);
      }
    }
  } else {
    bad("prompt", "'prompt' must be a string or an array of strings or token ids");
  }
  if (r->num_prompts() > static_cast<size_t>(limits.max_prompts))
    bad("prompt", "at most " + std::to_string(limits.max_prompts) + " prompts per request");
}

std::string message_content(const json& m, size_t i) {
  const std::string param = "messages[" + std::to_string(i) + "].content";
  const json* c = field(m, "content");
  if (!c) return "";
  if (c->is_string()) return checked_text(*c, param.c_str(), "message content");
  if (!c->is_array()) bad(param, "message content must be a string or an array of text parts");
  std::string out;
  for (const auto& part : *c) {
    const json* type = part.is_object() ? field(part, "type") : nullptr;
    if (!type || !type->is_string() || type->get<std::string>() != "text" || !part.contains("text"))
      bad(param, "only text content parts are supported");
    out += checked_text(part["text"], param.c_str(), "message content");
  }
  return out;
}

void parse_messages(const json& j, CompletionRequest* r) {
  const json* ms = field(j, "messages");
  if (!ms) bad("messages", "'messages' is required");
  if (!ms->is_array()) bad("messages", "'messages' must be an array");
  if (ms->empty()) bad("messages", "'messages' is empty", "empty_prompt");
  bool any_text = false;
  for (size_t i = 0; i < ms->size(); ++i) {
    const json& m = (*ms)[i];
    if (!m.is_object()) bad("messages", "each message must be an object");
    const json* role = field(m, "role");
    if (!role || !role->is_string())
      bad("messages[" + std::to_string(i) + "].role", "each message needs a string 'role'");
    std::string rs = role->get<std::string>();
    if (rs == "developer") rs = "system";
    if (rs != "system" && rs != "user" && rs != "assistant")
      bad("messages[" + std::to_string(i) + "].role",
          "role must be system, user or assistant, got '" + rs + "'");
    ChatMessage msg{rs, message_content(m, i)};
    any_text = any_text || !msg.content.empty();
    r->messages.push_back(std::move(msg));
  }
  if (!any_text) bad("messages", "every message is empty", "empty_prompt");
}

void parse_stop(const json& j, SamplingParams* s, const ProtocolLimits& limits) {
  const json* v = field(j, "stop");
  if (!v) return;
  auto add = [&](const json& e) {
    std::string t = checked_text(e, "stop", "'stop'");
    if (t.empty()) bad("stop", "stop strings must not be empty");
    s->stop.push_back(std::move(t));
  };
  if (v->is_string()) {
    add(*v);
  } else if (v->is_array()) {
    for (const auto& e : *v) add(e);
  } else {
    bad("stop", "'stop' must be a string or an array of strings");
  }
  if (s->stop.size() > limits.max_stop_strings)
    bad("stop", "at most " + std::to_string(limits.max_stop_strings) + " stop strings");
}

void parse_sampling(const json& j, CompletionRequest* r, const ProtocolLimits& limits) {
  SamplingParams& s = r->sampling;
  s.temperature = static_cast<float>(get_number(j, "temperature", 0.0, 10.0, 1.0));
  s.top_p = static_cast<float>(get_number(j, "top_p", 0.0, 1.0, 1.0));
  if (s.top_p <= 0.0f) bad("top_p", "'top_p' must be greater than 0");
  long long top_k = get_int(j, "top_k", -1, 1 << 30).value_or(0);
  s.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);
  s.min_p = static_cast<float>(get_number(j, "min_p", 0.0, 1.0, 0.0));
  s.presence_penalty = static_cast<float>(get_number(j, "presence_penalty", -2.0, 2.0, 0.0));
  s.frequency_penalty = static_cast<float>(get_number(j, "frequency_penalty", -2.0, 2.0, 0.0));
  s.repetition_penalty = static_cast<float>(get_number(j, "repetition_penalty", 0.0, 10.0, 1.0));
  if (s.repetition_penalty <= 0.0f)
    bad("repetition_penalty", "'repetition_penalty' must be greater than 0");
  if (auto seed = get_int(j, "seed", std::numeric_limits<long long>::min(),
                          std::numeric_limits<long long>::max()))
    s.seed = static_cast<uint64_t>(*seed);
  s.ignore_eos = get_bool(j, "ignore_eos", false);
  parse_stop(j, &s, limits);

  // max_completion_tokens is the newer name; either may be given.
  const char* key = field(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  auto mt =
      get_int(j, key, std::numeric_limits<long long>::min(), std::numeric_limits<long long>::max());
  if (mt) {
    if (*mt < 1) bad(key, std::string("'") + key + "' must be at least 1");
    if (*mt > limits.max_tokens_limit)
      bad(key,
          std::string("'") + key + "' must be at most " + std::to_string(limits.max_tokens_limit));
    s.max_tokens = static_cast<int>(*mt);
    r->max_tokens_given = true;
  } else {
    s.max_tokens = r->chat ? limits.default_chat_max_tokens : limits.default_max_tokens;
  }
}

void check_unsupported(const json& j) {
  if (const json* lp = field(j, "logprobs")) {
    bool wants = lp->is_boolean() ? lp->get<bool>() : (lp->is_number() && lp->get<double>() > 0);
    if (wants) bad("logprobs", "'logprobs' is not supported", "unsupported_parameter");
  }
  if (auto best_of = get_int(j, "best_of", 0, 1 << 20); best_of && *best_of > 1)
    bad("best_of", "'best_of' is not supported", "unsupported_parameter");
  if (const json* tools = field(j, "tools"); tools && !(tools->is_array() && tools->empty()))
    bad("tools", "tools are not supported", "unsupported_parameter");
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else
      return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
      return false;  // overlong
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

nlohmann::json parse_json_object(std::string_view body) {
  return parse_object(body);
}

namespace {

CompletionRequest parse_completion(std::string_view body, bool chat, const ProtocolLimits& limits) {
  json j = parse_object(body);
  CompletionRequest r;
  r.chat = chat;
  if (const json* m = field(j, "model")) r.model = checked_text(*m, "model", "'model'");
  if (chat)
    parse_messages(j, &r);
  else
    parse_prompt(j, &r, limits);
  check_unsupported(j);
  parse_sampling(j, &r, limits);
  r.n = static_cast<int>(get_int(j, "n", 1, limits.max_n).value_or(1));
  if (r.num_prompts() * r.n > static_cast<size_t>(limits.max_n))
    bad("n", "prompts x n must be at most " + std::to_string(limits.max_n));
  r.stream = get_bool(j, "stream", false);
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = get_bool(*so, "include_usage", false);
  }
  r.echo = !chat && get_bool(j, "echo", false);
  if (chat) {
    for (auto& stop : chat_template_stops()) r.sampling.stop.push_back(stop);
  }
  return r;
}

}  // namespace

CompletionRequest parse_completion_request(std::string_view body, bool chat,
                                           const ProtocolLimits& limits) {
  return client_json_errors([&] { return parse_completion(body, chat, limits); });
}

std::string apply_chat_template(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (const auto& m : messages) {
    const char* who = m.role == "system"      ? "시스템"
                      : m.role == "assistant" ? "어시스턴트"
                                              : "사용자";
    out += who;
    out += ": ";
    out += m.content;
    out += "\n";
  }
  out += "어시스턴트: ";
  return out;
}

std::vector<std::string> chat_template_stops() {
  return {"\n사용자:"};
}

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

json finish_json(FinishReason r) {
  return r == FinishReason::kNone ? json(nullptr) : json(finish_reason_name(r));
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

std::string completion_response_json(const ResponseMeta& meta,
                                     const std::vector<ChoiceResult>& choices, const Usage& usage) {
  json j = base_json(meta, false);
  json arr = json::array();
  for (const auto& c : choices) {
    json cj = {{"index", c.index}, {"finish_reason", finish_json(c.finish)}, {"logprobs", nullptr}};
    if (meta.chat)
      cj["message"] = {{"role", "assistant"}, {"content", c.text}};
    else
      cj["text"] = c.text;
    arr.push_back(std::move(cj));
  }
  j["choices"] = std::move(arr);
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string stream_chunk_json(const ResponseMeta& meta, int index, const std::string& text,
                              FinishReason finish, bool role_delta, bool with_usage_null) {
  json j = base_json(meta, true);
  json c = {{"index", index}, {"finish_reason", finish_json(finish)}, {"logprobs", nullptr}};
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

TokenizeRequest parse_tokenize_request(std::string_view body) {
  return client_json_errors([&] {
    json j = parse_object(body);
    const json* t = field(j, "prompt");
    const char* key = "prompt";
    if (!t) {
      t = field(j, "text");
      key = "text";
    }
    if (!t) bad("prompt", "'prompt' (or 'text') is required");
    TokenizeRequest r;
    r.text = checked_text(*t, key, (std::string("'") + key + "'").c_str());
    r.add_bos = get_bool(j, "add_special_tokens", true);
    return r;
  });
}

std::vector<int> parse_detokenize_request(std::string_view body, int vocab_size) {
  return client_json_errors([&] {
    json j = parse_object(body);
    const json* t = field(j, "tokens");
    if (!t) bad("tokens", "'tokens' is required");
    if (!t->is_array()) bad("tokens", "'tokens' must be an array of integers");
    std::vector<int> ids;
    for (const auto& e : *t) {
      if (!e.is_number_integer()) bad("tokens", "'tokens' must be an array of integers");
      if (!is_token_id(e) || e.get<long long>() >= vocab_size)
        bad("tokens", "token id " + e.dump() + " is outside the vocabulary (0.." +
                          std::to_string(vocab_size - 1) + ")");
      ids.push_back(e.get<int>());
    }
    return ids;
  });
}

}  // namespace ktl::server
