#include "core/tokenizer/chat_tools.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace ktl {
namespace {

using ojson = nlohmann::ordered_json;

void dump_python(const ojson& j, std::string* out) {
  if (j.is_object()) {
    *out += '{';
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!first) *out += ", ";
      first = false;
      *out += ojson(it.key()).dump(-1, ' ', false, ojson::error_handler_t::replace);
      *out += ": ";
      dump_python(it.value(), out);
    }
    *out += '}';
  } else if (j.is_array()) {
    *out += '[';
    for (size_t i = 0; i < j.size(); ++i) {
      if (i) *out += ", ";
      dump_python(j[i], out);
    }
    *out += ']';
  } else {
    *out += j.dump(-1, ' ', false, ojson::error_handler_t::replace);
  }
}

ojson parse(const std::string& text, const std::string& what) {
  try {
    return ojson::parse(text);
  } catch (const ojson::exception& e) {
    throw std::invalid_argument(what + " is not valid JSON: " + e.what());
  }
}

std::string tools_block(const std::vector<ChatToolSpec>& tools) {
  std::string b =
      "# Tools\n\nTo call a function, reply with only <tool_call>\n{\"name\": <function name>, "
      "\"arguments\": <arguments object>}\n</tool_call>\n\n<tools>";
  for (const auto& t : tools) {
    ojson fn = ojson::object();
    fn["name"] = t.name;
    if (!t.description.empty()) fn["description"] = t.description;
    fn["parameters"] = parse(t.parameters, "the parameters of " + t.name);
    ojson tool = ojson::object();
    tool["type"] = "function";
    tool["function"] = std::move(fn);
    b += '\n';
    dump_python(tool, &b);
  }
  return b + "\n</tools>";
}

}  // namespace

std::string python_json(const std::string& json_text) {
  std::string out;
  dump_python(parse(json_text, "JSON"), &out);
  return out;
}

std::string render_tool_call(const ChatToolCall& call) {
  std::string args = call.arguments.empty() ? "{}" : call.arguments;
  return std::string(kToolCallOpen) + "\n{\"name\": " + ojson(call.name).dump() +
         ", \"arguments\": " + args + "}\n" + kToolCallClose;
}

std::vector<ChatMessage> render_tool_messages(const std::vector<ChatApiMessage>& messages,
                                              const std::vector<ChatToolSpec>& tools,
                                              ChatFormat format) {
  std::vector<ChatMessage> out;
  size_t i = 0;
  if (!tools.empty()) {
    const bool has_system = !messages.empty() && messages[0].role == "system";
    std::string sys = has_system ? messages[0].content + "\n\n" : "";
    out.push_back({"system", sys + tools_block(tools)});
    i = has_system ? 1 : 0;
  }
  for (; i < messages.size(); ++i) {
    const ChatApiMessage& m = messages[i];
    if (m.role == "tool") {
      out.push_back({format == ChatFormat::kLegacy ? "user" : "tool",
                     "<tool_response>\n" + m.content + "\n</tool_response>"});
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      std::string c = m.content;
      for (const auto& call : m.tool_calls) c += render_tool_call(call);
      out.push_back({"assistant", c});
    } else {
      out.push_back({m.role, m.content});
    }
  }
  return out;
}

std::optional<std::vector<ChatToolCall>> parse_tool_calls(const std::string& reply) {
  const std::string open = kToolCallOpen, close = kToolCallClose;
  std::vector<ChatToolCall> calls;
  size_t pos = reply.find_first_not_of(" \t\r\n");
  while (pos != std::string::npos) {
    if (reply.compare(pos, open.size(), open) != 0) return std::nullopt;
    const size_t end = reply.find(close, pos + open.size());
    if (end == std::string::npos) return std::nullopt;
    const std::string body = reply.substr(pos + open.size(), end - pos - open.size());
    ojson j;
    try {
      j = ojson::parse(body);
    } catch (const ojson::exception&) {
      return std::nullopt;
    }
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return std::nullopt;
    ChatToolCall c;
    c.name = j["name"].get<std::string>();
    const ojson args = j.contains("arguments") ? j["arguments"] : ojson::object();
    c.arguments = args.is_string() ? args.get<std::string>() : args.dump();
    calls.push_back(std::move(c));
    pos = reply.find_first_not_of(" \t\r\n", end + close.size());
  }
  if (calls.empty()) return std::nullopt;
  return calls;
}

}  // namespace ktl
