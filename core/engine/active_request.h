// The engine thread's private types, shared by the files that implement LlmEngine
// (llm_engine.cpp, speculative_decoding.cpp): a request's event queue and its state while active.
//
// Thread-safety: RequestQueue is safe from any thread; ActiveRequest belongs to the engine thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/engine/engine_lora.h"
#include "core/grammar/grammar_matcher.h"
#include "core/scheduling/incremental_detokenizer.h"
#include "core/scheduling/sampler.h"
#include "core/scheduling/stop_matcher.h"

namespace ktl {

struct EngineInbox;

// A loaded LoRA adapter: its weights and its registry entry (counters guarded by the engine's
// adapters_mu_).
struct ServedAdapter {
  AdapterInfo info;
  uint64_t salt = 0;  // prefix-cache namespace: unique per load, so a reload never shares blocks
  std::shared_ptr<const EngineLora> weights;
};

// One sequence's draft tokens for a speculative step.
struct SpecDraft {
  std::vector<int> tokens;           // proposed tokens, verified in order
  std::vector<TokenDistribution> q;  // the draft's distribution per token; empty: one-hot
  int len_before = 0;                // the sequence's token count when proposed
  int draft_computed = 0;            // draft K/V after proposing (len_before + k - 1); 0: none
};

class RequestQueue : public RequestHandle {
 public:
  RequestQueue(uint64_t id, std::weak_ptr<EngineInbox> inbox) : id_(id), inbox_(std::move(inbox)) {}

  bool next(GenerationEvent* out, std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_for(lk, timeout, [&] { return !events_.empty(); })) return false;
    *out = std::move(events_.front());
    events_.pop_front();
    return true;
  }
  void cancel() override;  // queues the cancellation in the engine's inbox
  uint64_t id() const override { return id_; }
  void push(GenerationEvent ev) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      events_.push_back(std::move(ev));
    }
    cv_.notify_all();
  }

 private:
  uint64_t id_;
  std::weak_ptr<EngineInbox> inbox_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
};

struct ActiveRequest {
  ActiveRequest(uint64_t id_, std::shared_ptr<RequestQueue> q_, const GenerationRequest& req,
                uint64_t seed, std::function<std::string(int)> bytes, bool strip, int max_new_)
      : id(id_),
        q(std::move(q_)),
        params(req.sampling),
        sampler(req.sampling, req.prompt_tokens, seed),
        detok(std::move(bytes), strip),
        stop(req.sampling.stop),
        prompt_len(static_cast<int>(req.prompt_tokens.size())),
        max_new(max_new_) {
    if (req.grammar) matcher = std::make_unique<grammar::GrammarMatcher>(req.grammar);
  }
  uint64_t id;
  std::shared_ptr<RequestQueue> q;
  SamplingParams params;
  Sampler sampler;
  IncrementalDetokenizer detok;
  StopMatcher stop;
  int prompt_len;
  int max_new;
  int generated = 0;
  std::chrono::steady_clock::time_point t_submit;
  double ttft_ms = -1;
  std::unique_ptr<grammar::GrammarMatcher> matcher;  // structured output
  // Echo: prompt log-probabilities computed so far (entry i scores prompt token i); sent whole
  // with the first event once every position has them.
  std::vector<TokenLogprob> prompt_lp;
  bool prompt_lp_sent = false;
  std::shared_ptr<ServedAdapter> adapter;  // null: the base model
  // Speculative decoding: the prompt-lookup proposal planned for the next step, and how many of
  // the tokens have K/V in the draft model's pool (its catch-up starts there; 0 after a
  // preemption).
  std::vector<int> lookup_draft;
  int draft_computed = 0;
};

}  // namespace ktl
