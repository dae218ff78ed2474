#include "server/generation_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <stdexcept>

#include "core/tokenizer/chat_template.h"
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
  // The aliasing pointer keeps the engine (which owns the tokenizer) alive with the template.
  std::shared_ptr<const Tokenizer> tok(engine_, &engine_->tokenizer());
  const auto tmpl = ChatTemplate::for_tokenizer(tok);
  if (!tmpl) return tokenize_prompt(apply_chat_template(req_.messages));  // a model never tuned
  std::vector<ktl::ChatMessage> msgs;
  for (const auto& m : req_.messages) msgs.push_back({m.role, m.content});
  RenderedChat r;
  try {
    r = tmpl->render(msgs, /*add_generation_prompt=*/true);
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, e.what(), "invalid_request", "messages");
  }
  // The model ends its turn with <|end|>; the text stops of the legacy format do not apply.
  auto& stops = req_.sampling.stop;
  for (const auto& legacy : chat_template_stops())
    stops.erase(std::remove(stops.begin(), stops.end(), legacy), stops.end());
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
  if (!req_.model.empty() && req_.model != engine_->model_name())
    throw ApiError(404,
                   "model '" + req_.model + "' does not exist; the served model is '" +
                       engine_->model_name() + "'",
                   "model_not_found", "model");
  meta_.chat = req_.chat;
  meta_.id = (req_.chat ? "chatcmpl-" : "cmpl-") + ctx_.new_request_id();
  meta_.created = static_cast<int64_t>(std::time(nullptr));
  meta_.model = engine_->model_name();

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
  for (int k = 0; k < req_.n; ++k) {
    GenerationRequest g;
    g.prompt_tokens = tokens;
    g.sampling = req_.sampling;
    if (g.sampling.seed) g.sampling.seed = *g.sampling.seed + static_cast<uint64_t>(k);
    // Never ask for more than the context holds: the answer ends with finish_reason "length".
    g.sampling.max_tokens = std::min(g.sampling.max_tokens, context - len);
    SubRequest s;
    s.strip_leading_space = templated_chat_;
    s.index = prompt_idx * req_.n + k;
    s.echo_prefix = echo_text;
    s.prompt_tokens = len;
    try {
      s.handle = engine_->submit(std::move(g));
    } catch (const std::invalid_argument& e) {
      throw ApiError(400, e.what());
    } catch (const std::exception& e) {
      const std::string what = e.what();
      if (what.find("queue") != std::string::npos)
        throw ApiError(429, "the server is busy (engine queue full); retry later", "queue_full");
      throw ApiError(503, "the engine refused the request: " + what, "engine_unavailable");
    }
    subs_.push_back(std::move(s));
  }
}

void GenerationSession::note_first_token() {
  if (ttft_s_ < 0) ttft_s_ = seconds_since(t0_);
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
  if (!stream) {
    if (!s.started) s.text = s.echo_prefix;
    s.started = true;
    s.text += ev.text;
    return "";
  }
  std::string text = s.started ? std::move(ev.text) : s.echo_prefix + ev.text;
  std::string out;
  const bool include_usage = req_.include_usage;
  if (!s.started && meta_.chat)
    out +=
        sse_event(stream_chunk_json(meta_, s.index, "", FinishReason::kNone, true, include_usage));
  s.started = true;
  if (!text.empty())
    out += sse_event(
        stream_chunk_json(meta_, s.index, text, FinishReason::kNone, false, include_usage));
  if (s.finish == FinishReason::kError) {
    out += sse_event(error_json(500, s.error, "engine_error"));
  } else if (s.finish != FinishReason::kNone) {
    out += sse_event(stream_chunk_json(meta_, s.index, "", s.finish, false, include_usage));
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
  for (const auto& s : subs_) choices.push_back({s.index, s.text, s.finish});
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
