#include "server/openai_protocol.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace ktl::server {
namespace {

// Keys keep the client's order: a JSON schema's properties and a tool's parameters are
// generated and rendered in the order given (OpenAI's structured output does the same).
using json = nlohmann::ordered_json;

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

template <class J = json>
J parse_object(std::string_view body) {
  // nlohmann stops at a NUL as if the input ended there: the body must be one JSON value.
  if (body.find('\0') != std::string_view::npos)
    bad("", "request body contains a NUL byte", "invalid_json");
  J j;
  try {
    j = J::parse(body.begin(), body.end());
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

std::vector<ToolCall> parse_tool_calls(const json& m, size_t i) {
  std::vector<ToolCall> out;
  const json* tc = field(m, "tool_calls");
  if (!tc) return out;
  const std::string param = "messages[" + std::to_string(i) + "].tool_calls";
  if (!tc->is_array()) bad(param, "'tool_calls' must be an array");
  for (const auto& c : *tc) {
    const json* fn = c.is_object() ? field(c, "function") : nullptr;
    if (!fn || !fn->is_object()) bad(param, "each tool call needs a 'function' object");
    const json* name = field(*fn, "name");
    if (!name || !name->is_string()) bad(param, "each tool call needs a function name");
    ToolCall call;
    call.name = checked_text(*name, param.c_str(), "a function name");
    if (const json* id = field(c, "id")) call.id = checked_text(*id, param.c_str(), "'id'");
    const json* args = field(*fn, "arguments");
    if (args && args->is_string()) {
      call.arguments = checked_text(*args, param.c_str(), "'arguments'");
    } else if (args && args->is_object()) {
      call.arguments = args->dump();
    } else {
      call.arguments = "{}";
    }
    out.push_back(std::move(call));
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
    const std::string at = "messages[" + std::to_string(i) + "]";
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad(at + ".role", "each message needs a string 'role'");
    std::string rs = role->get<std::string>();
    if (rs == "developer") rs = "system";
    if (rs != "system" && rs != "user" && rs != "assistant" && rs != "tool")
      bad(at + ".role", "role must be system, user, assistant or tool, got '" + rs + "'");
    ChatMessage msg{rs, message_content(m, i), {}, {}};
    if (rs == "assistant") msg.tool_calls = parse_tool_calls(m, i);
    if (rs == "tool") {
      const json* id = field(m, "tool_call_id");
      if (!id || !id->is_string()) bad(at + ".tool_call_id", "a tool message needs 'tool_call_id'");
      msg.tool_call_id = checked_text(*id, (at + ".tool_call_id").c_str(), "'tool_call_id'");
    }
    any_text = any_text || !msg.content.empty() || !msg.tool_calls.empty();
    r->messages.push_back(std::move(msg));
  }
  if (!any_text) bad("messages", "every message is empty", "empty_prompt");
}

// Function names as OpenAI allows them: [a-zA-Z0-9_-]{1,64}.
bool valid_function_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  return true;
}

void parse_tools(const json& j, CompletionRequest* r) {
  const json* tools = field(j, "tools");
  if (tools) {
    if (!tools->is_array()) bad("tools", "'tools' must be an array");
    if (tools->size() > 128) bad("tools", "at most 128 tools");
    for (size_t i = 0; i < tools->size(); ++i) {
      const json& t = (*tools)[i];
      const std::string at = "tools[" + std::to_string(i) + "]";
      const json* type = t.is_object() ? field(t, "type") : nullptr;
      if (!type || !type->is_string() || type->get<std::string>() != "function")
        bad(at + ".type", "only tools of type 'function' are supported");
      const json* fn = field(t, "function");
      if (!fn || !fn->is_object()) bad(at + ".function", "a tool needs a 'function' object");
      const json* name = field(*fn, "name");
      if (!name || !name->is_string() || !valid_function_name(name->get<std::string>()))
        bad(at + ".function.name", "function names are 1-64 of a-z, A-Z, 0-9, _ and -");
      ToolDef d;
      d.name = name->get<std::string>();
      for (const auto& other : r->tools)
        if (other.name == d.name) bad(at + ".function.name", "duplicate function '" + d.name + "'");
      if (const json* desc = field(*fn, "description"))
        d.description =
            checked_text(*desc, (at + ".function.description").c_str(), "'description'");
      const json* params = field(*fn, "parameters");
      if (params && !params->is_object())
        bad(at + ".function.parameters", "'parameters' must be a JSON schema object");
      d.parameters = params ? params->dump() : "{\"type\":\"object\"}";
      r->tools.push_back(std::move(d));
    }
  }
  const json* tc = field(j, "tool_choice");
  if (!tc) return;
  if (tc->is_string()) {
    const std::string c = tc->get<std::string>();
    if (c == "auto")
      r->tool_choice = ToolChoice::kAuto;
    else if (c == "none")
      r->tool_choice = ToolChoice::kNone;
    else if (c == "required")
      r->tool_choice = ToolChoice::kRequired;
    else
      bad("tool_choice", "'tool_choice' must be auto, none, required or a function");
  } else if (tc->is_object()) {
    const json* fn = field(*tc, "function");
    const json* name = fn && fn->is_object() ? field(*fn, "name") : nullptr;
    if (!name || !name->is_string()) bad("tool_choice", "'tool_choice' needs function.name");
    r->tool_choice = ToolChoice::kNamed;
    r->tool_choice_name = name->get<std::string>();
    const bool known = std::any_of(r->tools.begin(), r->tools.end(),
                                   [&](const ToolDef& d) { return d.name == r->tool_choice_name; });
    if (!known)
      bad("tool_choice", "tool_choice names '" + r->tool_choice_name + "', not in 'tools'");
  } else {
    bad("tool_choice", "'tool_choice' must be a string or an object");
  }
  if (r->tools.empty() && (r->tool_choice == ToolChoice::kRequired))
    bad("tool_choice", "tool_choice 'required' needs 'tools'");
}

void parse_response_format(const json& j, CompletionRequest* r) {
  if (const json* g = field(j, "grammar")) {
    r->format.kind = ResponseFormat::Kind::kGrammar;
    r->format.grammar = checked_text(*g, "grammar", "'grammar'");
    if (r->format.grammar.empty()) bad("grammar", "'grammar' is empty");
  }
  const json* rf = field(j, "response_format");
  if (!rf) return;
  if (!rf->is_object()) bad("response_format", "'response_format' must be an object");
  const json* type = field(*rf, "type");
  if (!type || !type->is_string()) bad("response_format.type", "'response_format' needs a 'type'");
  const std::string t = type->get<std::string>();
  if (t == "text") return;
  if (r->format.kind == ResponseFormat::Kind::kGrammar)
    bad("grammar", "give either 'grammar' or 'response_format', not both");
  if (t == "json_object") {
    r->format.kind = ResponseFormat::Kind::kJsonObject;
  } else if (t == "json_schema") {
    const json* js = field(*rf, "json_schema");
    if (!js || !js->is_object())
      bad("response_format.json_schema", "'json_schema' must be an object with a 'schema'");
    if (const json* n = field(*js, "name")) checked_text(*n, "response_format", "'name'");
    const json* schema = field(*js, "schema");
    if (schema && !schema->is_object() && !schema->is_boolean())
      bad("response_format.json_schema.schema", "'schema' must be a JSON schema object");
    r->format.kind = ResponseFormat::Kind::kJsonSchema;
    r->format.schema = schema ? schema->dump() : "{}";
  } else {
    bad("response_format.type", "'response_format.type' must be text, json_object or json_schema");
  }
}

void parse_logprobs(const json& j, CompletionRequest* r) {
  if (!r->chat) {
    const json* lp = field(j, "logprobs");
    if (lp && lp->is_boolean()) {  // some clients send true/false here too
      r->logprobs = lp->get<bool>() ? 0 : -1;
      return;
    }
    r->logprobs = static_cast<int>(get_int(j, "logprobs", 0, kMaxTopLogprobs).value_or(-1));
    return;
  }
  const bool on = get_bool(j, "logprobs", false);
  auto top = get_int(j, "top_logprobs", 0, kMaxTopLogprobs);
  if (top && !on) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  r->logprobs = on ? static_cast<int>(top.value_or(0)) : -1;
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
    // max_tokens 0 scores the prompt only (echo + logprobs, as evaluation harnesses send).
    const int least = r->chat ? 1 : 0;
    if (*mt < least)
      bad(key, std::string("'") + key + "' must be at least " + std::to_string(least));
    if (*mt > limits.max_tokens_limit)
      bad(key,
          std::string("'") + key + "' must be at most " + std::to_string(limits.max_tokens_limit));
    s.max_tokens = static_cast<int>(*mt);
    r->max_tokens_given = true;
  } else {
    s.max_tokens = r->chat ? limits.default_chat_max_tokens : limits.default_max_tokens;
  }
}

void check_unsupported(const json& j, bool chat) {
  if (auto best_of = get_int(j, "best_of", 0, 1 << 20); best_of && *best_of > 1)
    bad("best_of", "'best_of' is not supported", "unsupported_parameter");
  if (!chat && field(j, "tools")) bad("tools", "tools need /v1/chat/completions");
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
  return parse_object<nlohmann::json>(body);
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
  check_unsupported(j, chat);
  parse_sampling(j, &r, limits);
  parse_logprobs(j, &r);
  parse_response_format(j, &r);
  if (chat) parse_tools(j, &r);
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
