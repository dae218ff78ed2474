// Function calling in ktl's chat formats (core/tokenizer/chat_template.h), defined here and in
// ChatTemplate::jinja() alike, so ktl, Hugging Face and llama.cpp render the same text:
//   - the tools go at the end of the system turn (one is added when the chat has none):
//       {system}\n\n# Tools\n\n...<tools>\n{"type": "function", "function": {...}}\n</tools>
//   - an assistant's call (Hermes/Qwen syntax, which llama.cpp's and vLLM's parsers read):
//       <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
//   - a tool's result: <tool_response>\n{content}\n</tool_response>, a `tool` turn in ChatML
//     (Hermes 2 Pro's layout), a user turn in the legacy format (it has no tool role).
// JSON is written as Python's json.dumps writes it (", " and ": ", no ASCII escaping, keys in
// the order given), which is what the Jinja `tojson` filter produces.
//
// Thread-safety: all functions are pure.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/tokenizer/chat_template.h"

namespace ktl {

struct ChatToolSpec {
  std::string name;
  std::string description;
  std::string parameters;  // JSON schema text
};

struct ChatToolCall {
  std::string name;
  std::string arguments;  // JSON text
};

// A message of the OpenAI chat API: role system | user | assistant | tool.
struct ChatApiMessage {
  std::string role;
  std::string content;
  std::vector<ChatToolCall> tool_calls;  // assistant
};

inline constexpr const char* kToolCallOpen = "<tool_call>";
inline constexpr const char* kToolCallClose = "</tool_call>";

// The conversation in the template's roles: tools into the system turn, calls into the
// assistant's content, tool results into `tool` turns (ChatML) or user turns (legacy). Throws
// std::invalid_argument on JSON that does not parse.
std::vector<ChatMessage> render_tool_messages(const std::vector<ChatApiMessage>& messages,
                                              const std::vector<ChatToolSpec>& tools,
                                              ChatFormat format = ChatFormat::kChatML);
// One call as the assistant writes it.
std::string render_tool_call(const ChatToolCall& call);
// The tool calls a reply consists of (whitespace around them allowed); nullopt when the reply
// is not a sequence of well-formed calls.
std::optional<std::vector<ChatToolCall>> parse_tool_calls(const std::string& reply);
// JSON text re-serialised as Python's json.dumps does (keys kept in order). Throws on bad JSON.
std::string python_json(const std::string& json_text);

}  // namespace ktl
