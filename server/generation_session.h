// One generation HTTP request in flight: its engine sub-requests (prompts x n choices), the
// admission slot it holds, its timing and its log line. Streaming and non-streaming responses
// both drive it. Destroying it cancels whatever is still running in the engine, releases the
// admission slot, records metrics and writes the request's log line.
//
// Thread-safety: not thread-safe; one httplib worker drives a session at a time.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "server/openai_protocol.h"

namespace ktl::server {

struct ServerContext;

// How a chat reply with tools is streamed: held back until its first character shows whether
// it is a call ('<') or text; a call is sent whole, as tool_calls deltas, when it ends.
enum class ToolMode { kOff, kUndecided, kText, kCall };

struct SubRequest {
  std::shared_ptr<RequestHandle> handle;
  int index = 0;            // choice index in the response
  std::string echo_prefix;  // prompt text to prepend (echo), sent with the first chunk
  std::string text;         // accumulated (non-streaming)
  FinishReason finish = FinishReason::kNone;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;
  bool started = false;  // first chunk sent
  // Chat template replies: the first piece carries SentencePiece's dummy-prefix space ("▁반"),
  // which is no part of the answer (decode() of the reply alone drops it too).
  bool strip_leading_space = false;
  std::string error;
  std::vector<LogprobEntry> logprobs;  // non-streaming: every token's so far
  int chars = 0;                       // characters of text so far (text_offset)
  ToolMode tool_mode = ToolMode::kOff;
  std::string held;  // text held back (tool mode)
  std::vector<ToolCall> tool_calls;
};

class GenerationSession {
 public:
  // Takes an admission slot (see admitted()).
  GenerationSession(ServerContext& ctx, std::string endpoint, bool stream);
  ~GenerationSession();
  GenerationSession(const GenerationSession&) = delete;
  GenerationSession& operator=(const GenerationSession&) = delete;

  bool admitted() const { return admitted_; }
  // Validates, tokenizes and submits every sub-request; throws ApiError.
  void start(CompletionRequest req);

  // Non-streaming: waits for every choice; throws ApiError(503) when the server aborts.
  // `client_gone` is asked every 100 ms: once it says true, every choice is cancelled (its KV
  // blocks and slot freed) and ApiError(499) is thrown.
  std::string run_to_completion(const std::function<bool()>& client_gone = nullptr);
  // Streaming: produces the next SSE bytes (may be empty while waiting up to ~`wait`); sets
  // *finished once "[DONE]" is included.
  std::string next_stream_bytes(std::chrono::milliseconds wait, bool* finished);
  void cancel_all(const std::string& why);

  const std::string& id() const { return meta_.id; }
  Usage usage() const;

 private:
  std::vector<int> tokenize_prompt(const std::string& text) const;
  // The chat prompt: the checkpoint's chat template (core/tokenizer/chat_template.h) with a
  // stop at end-of-turn, or the legacy "사용자: … 어시스턴트: " text for an untuned model.
  std::vector<int> chat_prompt();
  void submit(const std::vector<int>& tokens, const std::string& echo_text, int prompt_idx);
  // Turns one engine event into SSE bytes (streaming) or accumulated text.
  std::string on_event(SubRequest& s, GenerationEvent& ev, bool stream);
  // The event's log-probabilities (prompt ones first, on the first event) as response entries.
  std::vector<LogprobEntry> logprob_entries(SubRequest& s, const GenerationEvent& ev,
                                            const std::string& echo_text);
  LogprobEntry entry(const TokenLogprob& lp) const;
  // Tool mode: text to stream now (possibly none); the finish parses a held call.
  std::string route_tool_text(SubRequest& s, std::string text);
  std::string finish_tool_call(SubRequest& s, bool stream);
  void note_first_token();

  ServerContext& ctx_;
  std::string endpoint_;
  bool stream_;
  bool admitted_ = false;
  std::shared_ptr<Engine> engine_;
  std::shared_ptr<const grammar::CompiledGrammar> grammar_;
  CompletionRequest req_;
  std::string adapter_;  // the LoRA adapter "model" names; empty: the base model
  ResponseMeta meta_;
  std::vector<SubRequest> subs_;
  bool templated_chat_ = false;  // the prompt came from the checkpoint's chat template
  size_t next_poll_ = 0;
  bool done_sent_ = false;
  std::string status_ = "200";
  std::chrono::steady_clock::time_point t0_;
  std::chrono::steady_clock::time_point last_write_;
  double ttft_s_ = -1;
};

}  // namespace ktl::server
