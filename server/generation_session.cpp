#include "server/generation_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "core/base/utf8_util.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/chat_tools.h"
#include "core/tokenizer/tokenizer.h"
#include "server/api_error.h"
#include "server/server_context.h"

namespace ktl::server {

using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

GenerationSession::GenerationSession(ServerContext& ctx, std::string endpoint, bool stream)
    : ctx_(ctx), endpoint_(std::move(endpoint)), stream_(stream) {
  t0_ = last_write_ = Clock::now();
  const int now = ++ctx_.generations;
  admitted_ = now <= ctx_.cfg.max_concurrent_streams;
  ctx_.metrics.stream_opened();
}

GenerationSession::~GenerationSession() {
  bool unfinished = false;
  for (auto& s : subs_) {
    if (s.finish == FinishReason::kNone && s.handle) {
      s.handle->cancel();
      unfinished = true;
    }
  }
  if (unfinished && status_ == "200") status_ = "499";  // the client went away
  if (engine_ && !subs_.empty()) {
    const Usage u = usage();
    const double dur = seconds_since(t0_);
    std::string finish = unfinished ? "cancelled" : finish_reason_name(subs_[0].finish);
    ctx_.metrics.record_request({finish, u.prompt_tokens, u.completion_tokens, ttft_s_, dur});
    spdlog::info(
        "{} {} status={} stream={} choices={} prompt_tokens={} completion_tokens={} "
        "cached_tokens={} ttft_ms={:.1f} duration_ms={:.1f} finish={}",
        meta_.id, endpoint_, status_, stream_, subs_.size(), u.prompt_tokens, u.completion_tokens,
        u.cached_prompt_tokens, ttft_s_ < 0 ? -1.0 : ttft_s_ * 1e3, dur * 1e3, finish);
  }
  --ctx_.generations;
  ctx_.metrics.stream_closed();
}

Usage GenerationSession::usage() const {
  Usage u;
  for (size_t i = 0; i < subs_.size(); ++i) {
    // With n > 1 every choice shares its prompt: count the prompt once per prompt.
    if (static_cast<int>(i) % req_.n == 0) {
      u.prompt_tokens += subs_[i].prompt_tokens;
      u.cached_prompt_tokens += subs_[i].cached_tokens;
    }
    u.completion_tokens += subs_[i].completion_tokens;
  }
  return u;
}

std::vector<int> GenerationSession::tokenize_prompt(const std::string& text) const {
  const Tokenizer& tok = engine_->tokenizer();
  std::vector<int> ids = tok.encode(text);
  ids.insert(ids.begin(), tok.bos_id());
  return ids;
}

std::vector<int> GenerationSession::chat_prompt() {
  // The checkpoint's own chat format (core/tokenizer/chat_format.h), never another: a template
  // ktl cannot render is refused. The aliasing pointer keeps the engine (which owns the
  // tokenizer) alive with the template.
  std::shared_ptr<const Tokenizer> tok(engine_, &engine_->tokenizer());
  std::optional<ChatTemplate> tmpl;
  try {
    tmpl = ChatTemplate::for_tokenizer(tok);
  } catch (const ChatFormatError& e) {
    throw ApiError(400, "model '" + engine_->model_name() + "' cannot chat: " + e.what(),
                   "unsupported_chat_template", "messages");
  }
  const ChatFormat format = tmpl ? tmpl->format() : ChatFormat::kLegacy;
  // Tools, calls and tool results in the template's roles (core/tokenizer/chat_tools.h).
  std::vector<ChatApiMessage> api;
  for (const auto& m : req_.messages) {
    ChatApiMessage a{m.role, m.content, {}};
    for (const auto& c : m.tool_calls) a.tool_calls.push_back({c.name, c.arguments});
    api.push_back(std::move(a));
  }
  // Rendered with tool_choice "none" too (as Hugging Face renders any `tools`): only the
  // grammar differs.
  std::vector<ChatToolSpec> tools;
  for (const auto& t : req_.tools) tools.push_back({t.name, t.description, t.parameters});
  std::vector<ktl::ChatMessage> msgs;
  try {
    msgs = render_tool_messages(api, tools, format);
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, e.what(), "invalid_request", "messages");
  }
  if (!tmpl) {  // a base model: no chat markers, no template
    std::vector<ChatMessage> plain;
    for (const auto& m : msgs) plain.push_back({m.role, m.content, {}, {}});
    return tokenize_prompt(apply_chat_template(plain));
  }
  RenderedChat r;
  try {
    r = tmpl->render(msgs, /*add_generation_prompt=*/true);
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, e.what(), "invalid_request", "messages");
  }
  // The model ends its turn with its end-of-turn token; the text stops of the plain format do
  // not apply.
  auto& stops = req_.sampling.stop;
  for (const auto& plain : chat_template_stops())
    stops.erase(std::remove(stops.begin(), stops.end(), plain), stops.end());
  req_.sampling.stop_token_ids.push_back(tmpl->end_of_turn_id());
  templated_chat_ = true;
  return r.ids;
}

void GenerationSession::start(CompletionRequest req) {
  req_ = std::move(req);
  engine_ = ctx_.models.engine();
  if (!engine_) {
    const ModelStatus st = ctx_.models.status();
    if (st.state == ModelState::kLoading)
      throw ApiError(503, "the model is still loading; retry shortly", "model_loading");
    throw ApiError(503, "no model is loaded (POST /v1/models/load, or start with --model)",
                   "model_not_loaded");
  }
  if (!req_.model.empty() && req_.model != engine_->model_name()) {
    // Another name: one of the engine's LoRA adapters (as vLLM routes them), or unknown.
    std::string names;
    for (const AdapterInfo& a : engine_->adapters()) {
      if (a.draining) continue;
      if (a.name == req_.model) adapter_ = a.name;
      names += (names.empty() ? "" : ", ") + a.name;
    }
    if (adapter_.empty()) {
      status_ = "404";
      throw ApiError(404,
                     "model '" + req_.model + "' does not exist; the served model is '" +
                         engine_->model_name() + "'" +
                         (names.empty() ? "" : " (LoRA adapters: " + names + ")"),
                     "model_not_found", "model");
    }
  }
  meta_.chat = req_.chat;
  meta_.id = (req_.chat ? "chatcmpl-" : "cmpl-") + ctx_.new_request_id();
  meta_.created = static_cast<int64_t>(std::time(nullptr));
  meta_.model = adapter_.empty() ? engine_->model_name() : adapter_;

  try {
    grammar_ = ctx_.grammars.for_request(req_, engine_);
  } catch (const ApiError& e) {
    status_ = std::to_string(e.status);
    throw;
  }
  std::vector<std::pair<std::vector<int>, std::string>> prompts;  // tokens, echo text
  const Tokenizer& tok = engine_->tokenizer();
  if (req_.chat) {
    prompts.emplace_back(chat_prompt(), "");
  } else {
    for (const auto& p : req_.prompts) prompts.emplace_back(tokenize_prompt(p), p);
    for (const auto& ids : req_.prompt_ids) {
      for (int id : ids)
        if (id >= tok.vocab_size())
          throw ApiError(400, "token id " + std::to_string(id) + " is outside the vocabulary",
                         "invalid_request", "prompt");
      prompts.emplace_back(ids, tok.decode(ids));
    }
  }
  try {
    for (size_t p = 0; p < prompts.size(); ++p) {
      if (!req_.echo) prompts[p].second.clear();
      submit(prompts[p].first, prompts[p].second, static_cast<int>(p));
    }
  } catch (const ApiError& e) {
    status_ = std::to_string(e.status);  // for the log line; the route answers with the error
    throw;
  }
}

void GenerationSession::submit(const std::vector<int>& tokens, const std::string& echo_text,
                               int prompt_idx) {
  const int context = engine_->max_context();
  int max_prompt = context - 1;
  if (ctx_.cfg.max_prompt_tokens > 0) max_prompt = std::min(max_prompt, ctx_.cfg.max_prompt_tokens);
  const int len = static_cast<int>(tokens.size());
  if (len > max_prompt)
    throw ApiError(400,
                   "the prompt has " + std::to_string(len) + " tokens; the limit is " +
                       std::to_string(max_prompt),
                   "context_length_exceeded", req_.chat ? "messages" : "prompt");
  GenerationRequest g;
  g.prompt_tokens = tokens;
  g.sampling = req_.sampling;
  g.sampling.logprobs = req_.logprobs;
  g.sampling.prompt_logprobs = req_.echo && req_.logprobs >= 0;
  g.grammar = grammar_;
  g.adapter = adapter_;
  // Never ask for more than the context holds: the answer ends with finish_reason "length".
  g.sampling.max_tokens = std::min(g.sampling.max_tokens, context - len);
  std::vector<std::shared_ptr<RequestHandle>> handles;
  try {
    handles = engine_->submit_n(std::move(g), req_.n);
  } catch (const AdapterNotFound& e) {  // unloaded since start() looked
    throw ApiError(404, e.what(), "model_not_found", "model");
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, e.what());
  } catch (const std::exception& e) {
    const std::string what = e.what();
    if (what.find("queue") != std::string::npos)
      throw ApiError(429, "the server is busy (engine queue full); retry later", "queue_full");
    throw ApiError(503, "the engine refused the request: " + what, "engine_unavailable");
  }
  for (int k = 0; k < req_.n; ++k) {
    SubRequest s;
    s.handle = std::move(handles[k]);
    s.strip_leading_space = templated_chat_;
    s.index = prompt_idx * req_.n + k;
    s.echo_prefix = echo_text;
    s.prompt_tokens = len;
    if (req_.chat && req_.tools_active()) s.tool_mode = ToolMode::kUndecided;
    subs_.push_back(std::move(s));
  }
}

void GenerationSession::note_first_token() {
  if (ttft_s_ < 0) ttft_s_ = seconds_since(t0_);
}

LogprobEntry GenerationSession::entry(const TokenLogprob& lp) const {
  const Tokenizer& tok = engine_->tokenizer();
  auto show = [&](int id, std::vector<uint8_t>* bytes) {
    const std::string b = tok.token_bytes(id);
    if (bytes) bytes->assign(b.begin(), b.end());
    if (b.empty()) return tok.id_to_piece(id);  // </s>: no text of its own
    if (is_valid_utf8(b)) return b;
    static const char* hex = "0123456789abcdef";
    std::string out = "bytes:";
    for (unsigned char c : b) out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    return out;
  };
  LogprobEntry e;
  e.text = show(lp.token, &e.bytes);
  if (!std::isnan(lp.logprob)) e.logprob = lp.logprob;
  for (const auto& [id, v] : lp.top) {
    std::vector<uint8_t> b;
    e.top.emplace_back(show(id, &b), v);
    e.top_bytes.push_back(std::move(b));
  }
  return e;
}

std::vector<LogprobEntry> GenerationSession::logprob_entries(SubRequest& s,
                                                             const GenerationEvent& ev,
                                                             const std::string& echo_text) {
  std::vector<LogprobEntry> out;
  if (req_.logprobs < 0) return out;
  // Offsets count the token's characters; the one leading space decode() strips is not there.
  auto add = [&](const TokenLogprob& lp) {
    LogprobEntry& e = out.emplace_back(entry(lp));
    const std::string_view b(reinterpret_cast<const char*>(e.bytes.data()), e.bytes.size());
    const int n = static_cast<int>(utf8::count_chars(b));
    e.text_offset = s.chars;
    s.chars += s.chars == 0 && !b.empty() && b[0] == ' ' ? n - 1 : n;
  };
  for (const auto& lp : ev.prompt_logprobs) add(lp);
  // The generated text follows the echoed prompt as decode() wrote it.
  if (!echo_text.empty()) s.chars = static_cast<int>(utf8::count_chars(echo_text));
  for (const auto& lp : ev.logprobs) add(lp);
  return out;
}

std::string GenerationSession::route_tool_text(SubRequest& s, std::string text) {
  if (s.tool_mode == ToolMode::kOff || s.tool_mode == ToolMode::kText) return text;
  s.held += text;
  if (s.tool_mode == ToolMode::kUndecided) {
    const size_t first = s.held.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return "";
    s.tool_mode = s.held[first] == '<' ? ToolMode::kCall : ToolMode::kText;
    if (s.tool_mode == ToolMode::kText) return std::exchange(s.held, "");
  }
  return "";
}

std::string GenerationSession::finish_tool_call(SubRequest& s, bool stream) {
  std::string held = std::exchange(s.held, "");
  if (s.tool_mode != ToolMode::kCall && s.tool_mode != ToolMode::kUndecided) return held;
  auto calls = s.finish == FinishReason::kStop ? parse_tool_calls(held) : std::nullopt;
  if (!calls) return held;  // not a whole call: the text as it is
  std::string out;
  for (size_t i = 0; i < calls->size(); ++i) {
    ToolCall c{"call_" + meta_.id.substr(meta_.id.find('-') + 1) + "_" + std::to_string(s.index) +
                   "_" + std::to_string(i),
               (*calls)[i].name, (*calls)[i].arguments};
    if (stream) {
      const bool u = req_.include_usage;
      out += sse_event(tool_call_chunk_json(meta_, s.index, static_cast<int>(i), c, true, u));
      out += sse_event(tool_call_chunk_json(meta_, s.index, static_cast<int>(i), c, false, u));
    }
    s.tool_calls.push_back(std::move(c));
  }
  return out;
}

std::string GenerationSession::on_event(SubRequest& s, GenerationEvent& ev, bool stream) {
  if (!ev.token_ids.empty() || !ev.text.empty()) note_first_token();
  if (s.strip_leading_space && !ev.text.empty()) {
    if (ev.text[0] == ' ') ev.text.erase(0, 1);
    s.strip_leading_space = false;
  }
  if (ev.finish != FinishReason::kNone) {
    s.finish = ev.finish;
    if (ev.prompt_tokens > 0) s.prompt_tokens = ev.prompt_tokens;
    s.completion_tokens = std::max<int>(
        ev.completion_tokens, s.completion_tokens + static_cast<int>(ev.token_ids.size()));
    s.cached_tokens = ev.cached_prompt_tokens;
    if (ev.finish == FinishReason::kError) s.error = ev.error.empty() ? "engine error" : ev.error;
  } else {
    s.completion_tokens += static_cast<int>(ev.token_ids.size());
  }
  const std::string echo = s.started ? "" : s.echo_prefix;
  std::vector<LogprobEntry> lps = logprob_entries(s, ev, echo);
  std::string text = route_tool_text(s, echo + ev.text);
  const bool finished = s.finish != FinishReason::kNone && s.finish != FinishReason::kError;
  if (!stream) {
    s.started = true;
    s.text += text;
    if (finished) s.text += finish_tool_call(s, false);
    for (auto& e : lps) s.logprobs.push_back(std::move(e));
    return "";
  }
  std::string out;
  const bool include_usage = req_.include_usage;
  if (!s.started && meta_.chat)
    out +=
        sse_event(stream_chunk_json(meta_, s.index, "", FinishReason::kNone, true, include_usage));
  s.started = true;
  std::string calls = finished ? finish_tool_call(s, true) : "";
  if (finished && s.tool_calls.empty()) text += std::exchange(calls, "");
  if (!text.empty() || !lps.empty())
    out += sse_event(
        stream_chunk_json(meta_, s.index, text, FinishReason::kNone, false, include_usage, &lps));
  out += calls;
  if (s.finish == FinishReason::kError) {
    out += sse_event(error_json(500, s.error, "engine_error"));
  } else if (s.finish != FinishReason::kNone) {
    out += sse_event(stream_chunk_json(meta_, s.index, "", s.finish, false, include_usage, nullptr,
                                       !s.tool_calls.empty()));
  }
  return out;
}

std::string GenerationSession::run_to_completion(const std::function<bool()>& client_gone) {
  for (auto& s : subs_) {
    while (s.finish == FinishReason::kNone) {
      if (ctx_.abort_streams) {
        cancel_all("server shutting down");
        throw ApiError(503, "the server is shutting down", "shutting_down");
      }
      if (client_gone && client_gone()) {
        cancel_all("client_closed");
        throw ApiError(499, "the client closed the connection", "client_closed");
      }
      GenerationEvent ev;
      if (s.handle->next(&ev, std::chrono::milliseconds(100))) on_event(s, ev, false);
    }
    if (s.finish == FinishReason::kError) {
      status_ = "500";
      throw ApiError(500, "generation failed: " + s.error, "engine_error");
    }
  }
  std::vector<ChoiceResult> choices;
  for (const auto& s : subs_)
    choices.push_back({s.index, s.text, s.finish, req_.logprobs >= 0, s.logprobs, s.tool_calls});
  return completion_response_json(meta_, choices, usage());
}

std::string GenerationSession::next_stream_bytes(std::chrono::milliseconds wait, bool* finished) {
  *finished = false;
  std::string out;
  if (ctx_.abort_streams) {
    cancel_all("server shutting down");
    status_ = "503";
    *finished = true;
    return sse_event(error_json(503, "the server is shutting down", "shutting_down")) + sse_done();
  }
  std::vector<size_t> active;
  for (size_t i = 0; i < subs_.size(); ++i)
    if (subs_[i].finish == FinishReason::kNone) active.push_back(i);
  // Drain whatever is ready without blocking, then block on one request if nothing was.
  for (size_t i : active) {
    GenerationEvent ev;
    while (subs_[i].finish == FinishReason::kNone &&
           subs_[i].handle->next(&ev, std::chrono::milliseconds(0)))
      out += on_event(subs_[i], ev, true);
  }
  if (out.empty() && !active.empty()) {
    SubRequest& s = subs_[active[next_poll_++ % active.size()]];
    GenerationEvent ev;
    auto slice = active.size() > 1 ? std::min(wait, std::chrono::milliseconds(20)) : wait;
    if (s.finish == FinishReason::kNone && s.handle->next(&ev, slice)) out += on_event(s, ev, true);
  }
  const bool all_done = std::all_of(subs_.begin(), subs_.end(), [](const SubRequest& s) {
    return s.finish != FinishReason::kNone;
  });
  if (all_done && !done_sent_) {
    if (req_.include_usage) out += sse_event(usage_chunk_json(meta_, usage()));
    out += sse_done();
    done_sent_ = true;
    *finished = true;
  }
  const auto now = Clock::now();
  if (out.empty() && now - last_write_ > std::chrono::seconds(2)) out = sse_keepalive();
  if (!out.empty()) last_write_ = now;
  return out;
}

void GenerationSession::cancel_all(const std::string& why) {
  for (auto& s : subs_) {
    if (s.finish == FinishReason::kNone && s.handle) {
      s.handle->cancel();
      s.finish = FinishReason::kCancelled;
    }
  }
  if (why == "client_closed")
    status_ = "499";
  else if (status_ == "200")
    status_ = "503";
}

}  // namespace ktl::server
