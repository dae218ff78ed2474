// The OpenAI-compatible wire format: parses and validates /v1/completions and
// /v1/chat/completions bodies, applies the chat template, and formats responses, stream chunks
// and Server-Sent Events. No HTTP and no engine calls here, so it is unit-tested on its own.
//
// Legacy chat layout, for checkpoints without the chat markers (a chat-tuned checkpoint gets its
// own template, core/tokenizer/chat_template.h, in GenerationSession::chat_prompt):
//   <s>시스템: {system}\n사용자: {user}\n어시스턴트: {assistant}\n사용자: {user}\n어시스턴트:
// <s> is the BOS token (added as an id by the caller, not as text). Roles: system -> "시스템",
// user -> "사용자", assistant -> "어시스턴트"; the prompt always ends with "어시스턴트: ".
// The chat endpoint adds "\n사용자:" to the stop strings so the model does not write the
// user's next turn.
//
// Thread-safety: all functions are pure.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/engine/engine.h"
#include "core/scheduling/sampling_params.h"

namespace ktl::server {

// An assistant's function call (chat `tool_calls`); `arguments` is JSON text.
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;
};

struct ChatMessage {
  std::string role;  // system | user | assistant | tool
  std::string content;
  std::vector<ToolCall> tool_calls;  // assistant
  std::string tool_call_id;          // tool
};

// A function the model may call: `parameters` is its JSON schema as text ("{}" when absent).
struct ToolDef {
  std::string name;
  std::string description;
  std::string parameters;
};

enum class ToolChoice { kAuto, kNone, kRequired, kNamed };

// response_format, or the raw `grammar` field (GBNF, docs/inference-guide.md).
struct ResponseFormat {
  enum class Kind { kText, kJsonObject, kJsonSchema, kGrammar };
  Kind kind = Kind::kText;
  std::string schema;   // kJsonSchema: the schema as JSON text
  std::string grammar;  // kGrammar: GBNF text
};

// Limits applied while parsing (from ServerConfig).
struct ProtocolLimits {
  int max_tokens_limit = 4096;        // larger max_tokens -> 400
  int max_n = 16;                     // choices per request
  int max_prompts = 16;               // prompts in one /v1/completions batch
  int default_max_tokens = 16;        // /v1/completions without max_tokens (OpenAI's default)
  int default_chat_max_tokens = 256;  // /v1/chat/completions without max_tokens
  size_t max_stop_strings = 4;        // OpenAI allows up to 4
};

struct CompletionRequest {
  bool chat = false;
  std::string model;                         // empty: whichever model is loaded
  std::vector<std::string> prompts;          // completions: one or more text prompts
  std::vector<std::vector<int>> prompt_ids;  // completions: pre-tokenized prompts
  std::vector<ChatMessage> messages;         // chat
  SamplingParams sampling;
  bool max_tokens_given = false;  // false: max_tokens is the default, clamp silently
  int n = 1;                      // choices per prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;           // completions: prepend the prompt to the text
  // Completions: `logprobs` k; chat: `top_logprobs` k when `logprobs` is true. -1 = none.
  int logprobs = -1;
  ResponseFormat format;
  std::vector<ToolDef> tools;  // chat
  ToolChoice tool_choice = ToolChoice::kAuto;
  std::string tool_choice_name;  // kNamed
  // Tools that can be called: present and tool_choice is not "none".
  bool tools_active() const { return !tools.empty() && tool_choice != ToolChoice::kNone; }

  size_t num_prompts() const { return chat ? 1 : prompts.size() + prompt_ids.size(); }
};

// The body as one JSON object (nothing but whitespace around it, no NUL byte); every parse
// error, 1e309 included, is ApiError(400).
nlohmann::json parse_json_object(std::string_view body);

// Parses and validates a request body; throws ApiError(400/413 ...) with the offending param.
CompletionRequest parse_completion_request(std::string_view body, bool chat,
                                           const ProtocolLimits& limits);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s);

// The chat template above, without the BOS (ids are added by the caller).
std::string apply_chat_template(const std::vector<ChatMessage>& messages);
// Stop strings the chat template adds.
std::vector<std::string> chat_template_stops();

// "stop" | "length" | null-ish ("cancelled", "error" are reported as such).
const char* finish_reason_name(FinishReason r);

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;
};

// One token as the response shows it: `text` is the token's bytes when they are whole UTF-8,
// else "bytes:\\xNN..." (OpenAI's form for partial characters); `bytes` are always exact.
struct LogprobEntry {
  std::string text;
  std::vector<uint8_t> bytes;
  std::optional<float> logprob;  // empty: the first prompt token (nothing predicts it)
  std::vector<std::pair<std::string, float>> top;  // rivals, most likely first
  std::vector<std::vector<uint8_t>> top_bytes;     // their bytes
  int text_offset = 0;  // completions: characters before this token in the choice's text
};

struct ChoiceResult {
  int index = 0;
  std::string text;
  FinishReason finish = FinishReason::kNone;
  bool want_logprobs = false;
  std::vector<LogprobEntry> logprobs;
  std::vector<ToolCall> tool_calls;  // chat: the reply was a function call
};

// Identity of one response: id ("cmpl-..."/"chatcmpl-..."), creation time, model name.
struct ResponseMeta {
  std::string id;
  int64_t created = 0;
  std::string model;
  bool chat = false;
};

// Non-streaming body: {"id","object","created","model","choices":[...],"usage":{...}}.
std::string completion_response_json(const ResponseMeta& meta,
                                     const std::vector<ChoiceResult>& choices, const Usage& usage);

// One stream chunk for choice `index`. `text` is the new text; `finish` set on its last chunk;
// `role_delta` (chat) sends {"role":"assistant"} in the delta. `with_usage_null` adds
// "usage":null as OpenAI does when include_usage is on.
std::string stream_chunk_json(const ResponseMeta& meta, int index, const std::string& text,
                              FinishReason finish, bool role_delta, bool with_usage_null,
                              const std::vector<LogprobEntry>* logprobs = nullptr,
                              bool tool_calls = false);
// A chat stream chunk carrying a tool call: the first delta has its id, type and name with
// empty arguments, the second its arguments (as OpenAI streams them).
std::string tool_call_chunk_json(const ResponseMeta& meta, int index, int call_index,
                                 const ToolCall& call, bool header, bool with_usage_null);

// The final usage chunk (choices: []) sent when stream_options.include_usage is true.
std::string usage_chunk_json(const ResponseMeta& meta, const Usage& usage);

// "data: <payload>\n\n". The payload must not contain newlines (compact JSON never does).
std::string sse_event(std::string_view payload);
inline std::string sse_done() {
  return "data: [DONE]\n\n";
}
// A comment line clients ignore; written while idle to notice disconnected clients.
inline std::string sse_keepalive() {
  return ": keep-alive\n\n";
}

// /v1/tokenize body: {"prompt"|"text": string, "add_special_tokens"?: bool}.
struct TokenizeRequest {
  std::string text;
  bool add_bos = true;
};
TokenizeRequest parse_tokenize_request(std::string_view body);
// /v1/detokenize body: {"tokens": [int]}; ids are range-checked against `vocab_size`.
std::vector<int> parse_detokenize_request(std::string_view body, int vocab_size);

}  // namespace ktl::server
