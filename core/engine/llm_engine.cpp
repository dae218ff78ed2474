#include "core/engine/llm_engine.h"

#include <c10/core/InferenceMode.h>
#include <pthread.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>
#include <random>
#include <stdexcept>

#include "core/base/thread_policy.h"
#include "core/engine/active_request.h"
#include "core/engine/draft_runner.h"
#include "core/engine/engine_checkpoint.h"
#include "core/engine/engine_lora.h"
#include "core/engine/kernel_threads.h"
#include "core/engine/kv_budget.h"
#include "core/grammar/grammar_matcher.h"
#include "core/model/device.h"
#include "core/scheduling/incremental_detokenizer.h"
#include "core/scheduling/kv_cache_manager.h"
#include "core/scheduling/sampler.h"
#include "core/scheduling/scheduler.h"
#include "core/scheduling/stop_matcher.h"
#include "core/speculative/speculation_controller.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl {

using Clock = std::chrono::steady_clock;

namespace {

// fork() against threaded BLAS. OpenBLAS's pthreads build (Debian's libopenblas0-pthread) stops
// its worker threads in a pthread_atfork prepare handler; a threaded sgemm/sgemv that another
// thread is running at that moment has handed work to those workers and then waits for it
// forever. In `ktl serve` the job runner forks each training job's child while engine threads
// run forward passes: the engine hung for good (found by tests/server/concurrency_stress_test.cpp;
// a torch::mm loop beside fork+exec of /bin/true hangs within two forks). So a fork waits until
// no engine thread is inside a forward pass, forward passes wait while a fork waits or runs, and
// forks go one at a time (OpenBLAS's handler is not written for two at once). The handlers
// are registered while the program loads (below), after OpenBLAS registered its own as it
// loaded: prepare handlers run in reverse order of registration, so ours runs first.
class ForwardForkGate {
 public:
  static ForwardForkGate& get() {
    static ForwardForkGate* const gate = [] {
      auto* g = new ForwardForkGate;  // never destroyed: a fork may come while the process exits
      pthread_atfork([] { get().before_fork(); }, [] { get().after_fork_in_parent(); },
                     [] { get().reset_in_child(); });
      return g;
    }();
    return *gate;
  }
  void enter() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return !forking_ && forks_waiting_ == 0; });
    ++forwards_;
  }
  void leave() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      --forwards_;
    }
    cv_.notify_all();
  }

 private:
  void before_fork() {
    std::unique_lock<std::mutex> lk(mu_);
    ++forks_waiting_;
    cv_.wait(lk, [&] { return !forking_ && forwards_ == 0; });
    --forks_waiting_;
    forking_ = true;
  }
  void after_fork_in_parent() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      forking_ = false;
    }
    cv_.notify_all();
  }
  // The child has one thread and no forward in flight (the copied mutex may look taken).
  void reset_in_child() {
    new (&mu_) std::mutex;
    new (&cv_) std::condition_variable;
    forwards_ = forks_waiting_ = 0;
    forking_ = false;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  int forwards_ = 0;       // engine threads inside a forward pass
  int forks_waiting_ = 0;  // forks waiting for them (new forward passes wait behind these)
  bool forking_ = false;   // a fork between its prepare and parent handlers
};

// Registered before main(), when no thread can be forking yet: a fork whose prepare handlers had
// already started when ours was registered would skip ours.
[[maybe_unused]] const bool g_fork_gate_registered = (ForwardForkGate::get(), true);

// Holds the gate for one forward pass.
class ForwardSection {
 public:
  ForwardSection() : gate_(ForwardForkGate::get()) { gate_.enter(); }
  ~ForwardSection() { gate_.leave(); }
  ForwardSection(const ForwardSection&) = delete;
  ForwardSection& operator=(const ForwardSection&) = delete;

 private:
  ForwardForkGate& gate_;
};

}  // namespace

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "?";
}

// Shared between the engine and the request handles (which may outlive the engine).
struct EngineInbox {
  std::mutex mu;
  std::condition_variable cv;
  struct Submission {
    uint64_t id;
    GenerationRequest req;
    std::shared_ptr<RequestQueue> queue;
    Clock::time_point t_submit;
    uint64_t share_prompt_of = 0;            // a fork's leader (submit_n)
    std::shared_ptr<ServedAdapter> adapter;  // null: the base model
  };
  std::deque<Submission> submissions;
  std::vector<uint64_t> cancels;
  bool stopping = false;
  uint64_t next_id = 1;
};

void RequestQueue::cancel() {
  if (auto inbox = inbox_.lock()) {
    std::lock_guard<std::mutex> lk(inbox->mu);
    inbox->cancels.push_back(id_);
    inbox->cv.notify_all();
  }
}

LlmEngine::LlmEngine(std::shared_ptr<EngineModel> model, std::shared_ptr<Tokenizer> tokenizer,
                     const EngineConfig& cfg, std::string model_name,
                     std::function<std::string(int)> token_bytes,
                     std::shared_ptr<EngineModel> draft)
    : model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      cfg_(cfg),
      name_(std::move(model_name)),
      token_bytes_(std::move(token_bytes)),
      inbox_(std::make_shared<EngineInbox>()) {
  if (cfg_.block_size <= 0 || cfg_.max_num_seqs <= 0 || cfg_.max_batched_tokens <= 0) {
    throw std::invalid_argument("engine: block_size, max_num_seqs, max_batched_tokens must be > 0");
  }
  const ModelConfig& mc = model_->config();
  if (tokenizer_) {
    eos_id_ = tokenizer_->eos_id();
    auto tok = tokenizer_;
    if (!token_bytes_) token_bytes_ = [tok](int id) { return tok->token_bytes(id); };
  } else if (!token_bytes_) {
    token_bytes_ = [](int id) {
      return id < 256 ? std::string(1, static_cast<char>(id)) : "<" + std::to_string(id) + ">";
    };
  }
  const int threads = resolve_threads(cfg_.num_threads);  // 0: every (physical) core
  num_threads_ = threads;
  profile_ = std::getenv("KTL_ENGINE_PROFILE") != nullptr;
  torch::set_num_threads(threads);
  const KvBudget kv = kv_budget(mc, cfg_);
  const int num_blocks = kv.num_blocks;
  kv_bytes_ = kv.bytes;
  capacity_tokens_ = num_blocks * cfg_.block_size;
  pool_ = std::make_unique<PagedKvPool>(mc.num_layers, num_blocks, cfg_.block_size, mc.num_kv_heads,
                                        mc.head_dim(), model_->device());
  kv_ = std::make_unique<KvCacheManager>(num_blocks, cfg_.block_size, cfg_.enable_prefix_cache);
  scheduler_ = std::make_unique<Scheduler>(
      SchedulerConfig{cfg_.max_num_seqs, std::max(cfg_.max_batched_tokens, cfg_.max_num_seqs)},
      kv_.get());
  stats_.kv_blocks_total = num_blocks;
  next_seed_ = std::random_device{}();
  draft_seed_ = next_seed_ ^ 0x9e3779b97f4a7c15ull;
  if (cfg_.speculative.enabled()) {
    if (!draft && cfg_.speculative.prompt_lookup <= 0) {
      throw std::invalid_argument(
          "speculative decoding needs a draft model (--draft-model) or prompt lookup "
          "(--prompt-lookup N)");
    }
    if (cfg_.speculative.num_tokens < 1) {
      throw std::invalid_argument("speculative decoding: num_tokens must be >= 1");
    }
    if (draft) draft_ = std::make_unique<DraftRunner>(draft, mc, num_blocks, cfg_.block_size);
    spec_ctl_ = std::make_unique<SpeculationController>(cfg_.speculative);
  }
  thread_ = std::thread([this] { loop(); });
}

LlmEngine::~LlmEngine() {
  shutdown();
}

const Tokenizer& LlmEngine::tokenizer() const {
  if (!tokenizer_) throw std::logic_error("engine has no tokenizer (random-init model)");
  return *tokenizer_;
}

int LlmEngine::max_context() const {
  return model_->config().max_seq_length;
}

void LlmEngine::validate(const GenerationRequest& req) const {
  const int n = static_cast<int>(req.prompt_tokens.size());
  const int vocab = model_->config().vocab_size;
  if (n == 0) throw std::invalid_argument("empty prompt");
  for (int t : req.prompt_tokens) {
    if (t < 0 || t >= vocab) {
      throw std::invalid_argument("prompt token id " + std::to_string(t) + " out of range [0, " +
                                  std::to_string(vocab) + ")");
    }
  }
  if (n >= max_context()) {
    throw std::invalid_argument("prompt has " + std::to_string(n) +
                                " tokens but the model's context is " +
                                std::to_string(max_context()) + " tokens (at most " +
                                std::to_string(max_context() - 1) + " prompt tokens)");
  }
  Sampler::validate(req.sampling);
}

std::shared_ptr<RequestHandle> LlmEngine::submit(GenerationRequest req) {
  return submit_n(std::move(req), 1).front();
}

std::vector<std::shared_ptr<RequestHandle>> LlmEngine::submit_n(GenerationRequest req, int n) {
  if (n < 1) throw std::invalid_argument("n must be >= 1");
  validate(req);
  std::shared_ptr<ServedAdapter> adapter = acquire_adapter(req.adapter, n);
  std::lock_guard<std::mutex> lk(inbox_->mu);
  int waiting;
  {
    std::lock_guard<std::mutex> sl(stats_mu_);
    waiting = stats_.waiting;
  }
  const bool full = waiting + static_cast<int>(inbox_->submissions.size()) + n > cfg_.max_queue;
  if (inbox_->stopping || full) {
    for (int k = 0; k < n && adapter; ++k) release_adapter(adapter);
    throw std::runtime_error(inbox_->stopping ? "engine is shut down" : "queue full");
  }
  // Forks share the leader's prompt blocks, unless every choice needs its own prompt logits.
  const bool fork = n > 1 && !req.sampling.prompt_logprobs;
  std::vector<std::shared_ptr<RequestHandle>> out;
  uint64_t leader = 0;
  for (int k = 0; k < n; ++k) {
    GenerationRequest r = k + 1 < n ? req : std::move(req);
    if (r.sampling.seed) r.sampling.seed = *r.sampling.seed + static_cast<uint64_t>(k);
    const uint64_t id = inbox_->next_id++;
    auto q = std::make_shared<RequestQueue>(id, inbox_);
    inbox_->submissions.push_back({id, std::move(r), q, Clock::now(), fork ? leader : 0, adapter});
    if (k == 0) leader = id;
    out.push_back(std::move(q));
  }
  inbox_->cv.notify_all();
  return out;
}

void LlmEngine::drain_inbox(bool* stop) {
  std::deque<EngineInbox::Submission> subs;
  std::vector<uint64_t> cancels;
  {
    std::unique_lock<std::mutex> lk(inbox_->mu);
    if (!scheduler_->has_unfinished()) {
      inbox_->cv.wait(lk, [&] {
        return inbox_->stopping || !inbox_->submissions.empty() || !inbox_->cancels.empty();
      });
    }
    *stop = inbox_->stopping;
    subs.swap(inbox_->submissions);
    cancels.swap(inbox_->cancels);
  }
  for (auto& s : subs) {
    bool strip = true;  // at the sequence start unless the prompt already has text
    for (int t : s.req.prompt_tokens) strip = strip && token_bytes_(t).empty();
    const int max_new =
        std::min(s.req.sampling.max_tokens, std::min(max_context(), capacity_tokens_) -
                                                static_cast<int>(s.req.prompt_tokens.size()));
    auto r = std::make_unique<ActiveRequest>(s.id, s.queue, s.req, next_seed_++, token_bytes_,
                                             strip, max_new);
    r->t_submit = s.t_submit;
    r->adapter = std::move(s.adapter);
    if (s.req.sampling.prompt_logprobs) {
      r->prompt_lp.reserve(s.req.prompt_tokens.size());
      r->prompt_lp.push_back({s.req.prompt_tokens[0], std::nanf(""), {}});
    }
    scheduler_->add(s.id, std::move(s.req.prompt_tokens), !s.req.sampling.prompt_logprobs,
                    s.share_prompt_of, r->adapter ? r->adapter->salt : 0);
    active_.emplace(s.id, std::move(r));
  }
  for (uint64_t id : cancels) {
    auto it = active_.find(id);
    if (it != active_.end()) finish(*it->second, FinishReason::kCancelled, "");
  }
}

void LlmEngine::attach_prompt_logprobs(ActiveRequest& r, GenerationEvent& ev) {
  if (!r.params.prompt_logprobs || r.prompt_lp_sent) return;
  if (static_cast<int>(r.prompt_lp.size()) < r.prompt_len) return;  // cancelled mid-prefill
  ev.prompt_logprobs = std::move(r.prompt_lp);
  r.prompt_lp_sent = true;
}

void LlmEngine::finish(ActiveRequest& r, FinishReason why, std::string text,
                       const std::string& error, std::optional<TokenLogprob> lp, int last_token) {
  GenerationEvent ev;
  ev.text = std::move(text);
  if (last_token >= 0) ev.token_ids = {last_token};
  if (last_token >= 0 && lp) ev.logprobs = {std::move(*lp)};
  ev.finish = why;
  ev.error = error;
  ev.prompt_tokens = r.prompt_len;
  ev.completion_tokens = r.generated;
  if (const SchedRequest* s = scheduler_->find(r.id))
    ev.cached_prompt_tokens = s->num_cached_tokens;
  ev.ttft_ms = std::max(0.0, r.ttft_ms);
  attach_prompt_logprobs(r, ev);
  // Released before the last event goes out: a client that saw its request end never finds
  // the adapter still counting it (an unload right after must not drain).
  if (r.adapter) release_adapter(r.adapter);
  r.q->push(std::move(ev));
  scheduler_->finish(r.id);
  active_.erase(r.id);  // r is gone from here on
}

bool LlmEngine::is_end_token(const ActiveRequest& r, int tok) const {
  const auto& stops = r.params.stop_token_ids;
  return tok == eos_id_ || std::find(stops.begin(), stops.end(), tok) != stops.end();
}

int LlmEngine::sample_token(ActiveRequest& r, const float* logits_row) {
  const int V = model_->config().vocab_size;
  std::vector<float>& row = row_scratch_;
  row.assign(logits_row, logits_row + V);
  if (!r.matcher) return r.sampler.sample(row.data(), V);
  // The mask (cached per automaton state, so usually a lookup), then a draw among the allowed
  // tokens only: exact for every sampler setting, and cheap where few tokens are allowed.
  grammar::GrammarMatcher& m = *r.matcher;
  const auto& mask = m.allowed_mask();
  std::vector<int>& allowed = allowed_scratch_;
  allowed.clear();
  for (size_t w = 0; w < mask.size(); ++w) {
    for (uint32_t bits = mask[w]; bits != 0; bits &= bits - 1) {
      const int t = static_cast<int>(w * 32) + __builtin_ctz(bits);
      if (t < V) allowed.push_back(t);
    }
  }
  if (m.is_complete()) {  // end-of-sequence tokens, kept in ascending order
    allowed.push_back(eos_id_);
    for (int t : r.params.stop_token_ids)
      if (t >= 0 && t < V) allowed.push_back(t);
    std::sort(allowed.begin(), allowed.end());
    allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
  }
  if (allowed.empty()) return -1;  // the vocabulary cannot continue this sentence
  return r.sampler.sample(row.data(), V, &allowed);
}

void LlmEngine::handle_sample(ActiveRequest& r, const float* logits_row) {
  if (r.max_new <= 0) {  // max_tokens 0: the prompt was only scored
    finish(r, FinishReason::kLength, "");
    return;
  }
  int tok = 0;
  {
    const StepTimer sampling(StepPart::kSampling);
    tok = sample_token(r, logits_row);
  }
  if (tok < 0) {
    finish(r, FinishReason::kError, "",
           "structured output: no token of the vocabulary continues "
           "the grammar here");
    return;
  }
  emit_token(r, tok, logits_row);
}

bool LlmEngine::emit_token(ActiveRequest& r, int tok, const float* logits_row) {
  const int V = model_->config().vocab_size;
  std::optional<StepTimer> sampling(std::in_place, StepPart::kSampling);
  std::optional<TokenLogprob> lp;  // the raw distribution's, before penalties and the mask
  if (r.params.logprobs >= 0) lp = token_logprob(logits_row, V, tok, r.params.logprobs);
  r.sampler.accept(tok);
  sampling.reset();
  ++r.generated;
  if (r.ttft_ms < 0) {
    r.ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - r.t_submit).count();
  }
  {
    std::lock_guard<std::mutex> lk(stats_mu_);
    ++stats_.generated_tokens_total;
  }
  if (is_end_token(r, tok) && (!r.params.ignore_eos || r.matcher)) {
    std::string tail = r.stop.push(r.detok.flush());
    if (!r.stop.stopped()) tail += r.stop.flush();
    finish(r, FinishReason::kStop, tail, "", std::move(lp), tok);
    return false;
  }
  if (r.matcher) r.matcher->accept_token(tok);
  {
    const StepTimer timer(StepPart::kScheduling);
    scheduler_->append_token(r.id, tok);
  }
  std::string text = r.stop.push(r.detok.push(tok));
  if (r.stop.stopped()) {
    finish(r, FinishReason::kStop, text, "", std::move(lp), tok);
    return false;
  }
  if (const bool sentence_done = r.matcher && r.matcher->is_terminated();
      sentence_done || r.generated >= r.max_new) {
    text += r.stop.push(r.detok.flush());
    const bool stopped = r.stop.stopped() || sentence_done;
    if (!r.stop.stopped()) text += r.stop.flush();
    finish(r, stopped ? FinishReason::kStop : FinishReason::kLength, text, "", std::move(lp), tok);
    return false;
  }
  GenerationEvent ev;
  ev.text = std::move(text);
  ev.token_ids = {tok};
  if (lp) ev.logprobs = {std::move(*lp)};
  attach_prompt_logprobs(r, ev);
  r.q->push(std::move(ev));
  return true;
}

// One step's flattened batch: the rows of every scheduled sequence, and which rows need logits.
struct StepBatch {
  std::vector<int> tokens;
  std::vector<AttnSeq> seqs;
  std::vector<int> logit_rows;
  // What each logits row is for: sampling (target -1) or scoring prompt token `target`;
  // `spec` >= 0: the row verifies draft token `spec` of the sequence's SpecDraft (its last row
  // samples the next token), all of them handled with the row of spec 0.
  struct RowUse {
    uint64_t id;
    int target;
    int spec = -1;
  };
  std::vector<RowUse> uses;
  uint64_t new_prompt_tokens = 0;
  std::vector<const EngineLora*> row_lora;  // each row's adapter (null: base); empty when none
};

StepBatch LlmEngine::build_batch(const SchedulerOutput& out,
                                 const std::unordered_map<uint64_t, SpecDraft>& drafts) const {
  StepBatch b;
  // Sequences of one adapter next to each other: each adapter's rows are then one run, which
  // the forward pass slices instead of gathering (base rows, salt 0, first).
  auto adapter_of = [&](uint64_t id) -> const ServedAdapter* {
    auto it = active_.find(id);
    return it == active_.end() ? nullptr : it->second->adapter.get();
  };
  std::vector<const ScheduledSeq*> order;
  bool any_lora = false;
  for (const ScheduledSeq& s : out.seqs) {
    order.push_back(&s);
    any_lora = any_lora || adapter_of(s.id);
  }
  if (any_lora) {
    std::stable_sort(order.begin(), order.end(), [&](const ScheduledSeq* x, const ScheduledSeq* y) {
      const ServedAdapter* ax = adapter_of(x->id);
      const ServedAdapter* ay = adapter_of(y->id);
      return (ax ? ax->salt : 0) < (ay ? ay->salt : 0);
    });
  }
  for (const ScheduledSeq* sp : order) {
    const ScheduledSeq& s = *sp;
    const SchedRequest* r = scheduler_->find(s.id);
    // Draft slots hold the proposal (it may be shorter than the slots: the rest stay unused).
    const SpecDraft* draft = nullptr;
    if (s.num_spec > 0) {
      auto d = drafts.find(s.id);
      if (d != drafts.end()) draft = &d->second;
    }
    const int num_real = s.num_tokens - s.num_spec;
    const int num_draft = draft ? std::min(s.num_spec, static_cast<int>(draft->tokens.size())) : 0;
    AttnSeq a;
    a.row = static_cast<int>(b.tokens.size());
    a.num_tokens = num_real + num_draft;
    a.start = s.start;
    a.block_table = s.block_table;
    b.tokens.insert(b.tokens.end(), r->tokens.begin() + s.start,
                    r->tokens.begin() + s.start + num_real);
    if (num_draft > 0)
      b.tokens.insert(b.tokens.end(), draft->tokens.begin(), draft->tokens.begin() + num_draft);
    if (any_lora) {
      const ServedAdapter* ad = adapter_of(s.id);
      b.row_lora.insert(b.row_lora.end(), a.num_tokens, ad ? ad->weights.get() : nullptr);
    }
    if (s.start == r->num_cached_tokens && r->num_preemptions == 0) {
      b.new_prompt_tokens += r->num_prompt_tokens;  // first chunk of a new request
    }
    auto it = active_.find(s.id);
    if (it != active_.end() && it->second->params.prompt_logprobs) {
      // Row of position p predicts prompt token p + 1; only those not scored yet.
      const int next = static_cast<int>(it->second->prompt_lp.size());
      const int end = std::min(s.start + s.num_tokens, r->num_prompt_tokens - 1);
      for (int p = std::max(s.start, next - 1); p < end; ++p) {
        b.logit_rows.push_back(a.row + p - s.start);
        b.uses.push_back({s.id, p + 1});
      }
    }
    if (num_draft > 0) {
      for (int j = 0; j <= num_draft; ++j) {
        b.logit_rows.push_back(a.row + num_real - 1 + j);
        b.uses.push_back({s.id, -1, j});
      }
    } else if (s.sample) {
      b.logit_rows.push_back(a.row + a.num_tokens - 1);
      b.uses.push_back({s.id, -1});
    }
    b.seqs.push_back(std::move(a));
  }
  return b;
}

void LlmEngine::set_step_profiling(bool on) {
  std::lock_guard<std::mutex> lk(step_profile_mu_);
  if (on) decode_profile_ = {};
  step_profiling_.store(on);
}

StepProfile LlmEngine::decode_step_profile(bool reset) const {
  std::lock_guard<std::mutex> lk(step_profile_mu_);
  StepProfile p = decode_profile_;
  if (reset) decode_profile_ = {};
  return p;
}

void LlmEngine::step() {
  // ktl bench --profile: this step's parts (null when off: the timers below read no clock).
  StepProfile prof;
  StepProfileScope profiling(step_profiling_.load(std::memory_order_relaxed) ? &prof : nullptr);
  const auto t_step = Clock::now();
  const uint64_t generated_before = stats_.generated_tokens_total;  // written by this thread only
  std::optional<StepTimer> scheduling(std::in_place, StepPart::kScheduling);
  if (spec_ctl_) plan_speculation();
  SchedulerOutput out = scheduler_->schedule();
  for (uint64_t id : out.preempted) {  // its blocks, and the draft's K/V in them, are gone
    auto it = active_.find(id);
    if (it != active_.end()) it->second->draft_computed = 0;
  }
  if (out.empty()) {
    // Nothing fits (cannot happen while prompts are bounded by the pool): fail the head.
    if (!active_.empty() && scheduler_->num_running() == 0) {
      finish(*active_.begin()->second, FinishReason::kError, "", "KV cache too small");
    }
    return;
  }
  scheduling.reset();
  const auto t_draft = Clock::now();
  const std::unordered_map<uint64_t, SpecDraft> drafts =
      spec_ctl_ ? propose_drafts(out) : std::unordered_map<uint64_t, SpecDraft>{};
  const double draft_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_draft).count();
  scheduling.emplace(StepPart::kScheduling);
  const StepBatch b = build_batch(out, drafts);
  scheduling.reset();
  const auto t_fwd = Clock::now();
  // [R, V] on the host; no fork() meanwhile (ForwardForkGate)
  const torch::Tensor logits = [&] {
    ForwardSection no_fork;
    return model_->forward(b.tokens, b.seqs, *pool_, b.logit_rows, AttnPath::kAuto, b.row_lora)
        .contiguous();
  }();
  const double fwd_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_fwd).count();

  scheduling.emplace(StepPart::kScheduling);
  scheduler_->complete_step(out);
  scheduling.reset();
  {
    std::lock_guard<std::mutex> lk(stats_mu_);
    stats_.prompt_tokens_total += b.new_prompt_tokens;
    ++stats_.steps;
  }
  const float* lp = logits.defined() && logits.numel() ? logits.data_ptr<float>() : nullptr;
  const int V = model_->config().vocab_size;
  for (size_t i = 0; i < b.uses.size(); ++i) {
    auto it = active_.find(b.uses[i].id);
    if (it == active_.end()) continue;
    ActiveRequest& r = *it->second;
    const int target = b.uses[i].target;
    if (b.uses[i].spec > 0) continue;  // verified with the sequence's first row
    if (b.uses[i].spec == 0) {
      verify_speculation(r, lp + i * V, drafts.at(r.id));
    } else if (target < 0) {
      handle_sample(r, lp + i * V);
    } else if (target == static_cast<int>(r.prompt_lp.size())) {  // not scored before a preemption
      const StepTimer timer(StepPart::kSampling);
      const int tok = scheduler_->find(r.id)->tokens[target];
      r.prompt_lp.push_back(token_logprob(lp + i * V, V, tok, std::max(0, r.params.logprobs)));
    }
  }
  // --speculative auto measures decode steps, whole (drafting, forward, verification): a step
  // with a prefill chunk costs otherwise and is left out.
  if (spec_ctl_ && std::all_of(out.seqs.begin(), out.seqs.end(), [](const ScheduledSeq& s) {
        return s.num_tokens - s.num_spec == 1;
      })) {
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t_step).count();
    const auto emitted = static_cast<int>(stats_.generated_tokens_total - generated_before);
    spec_ctl_->record_step(spec_batch_, spec_k_, emitted, ms);
  }
  if (StepProfile* p = active_step_profile()) {
    profiling.close();  // the step's wall time ends here
    p->rows = static_cast<int64_t>(b.tokens.size());
    if (b.tokens.size() == b.seqs.size()) {  // a decode step: one token per sequence
      std::lock_guard<std::mutex> lk(step_profile_mu_);
      decode_profile_.add(*p);
    }
  }
  if (profile_) {  // KTL_ENGINE_PROFILE=1: where a step's time goes
    const double all_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_fwd).count();
    std::fprintf(stderr,
                 "[engine] step %llu: %zu seqs, %zu tokens, draft %.1f ms, forward %.1f ms, "
                 "sample+emit %.1f ms\n",
                 static_cast<unsigned long long>(stats_.steps), b.seqs.size(), b.tokens.size(),
                 draft_ms, fwd_ms, all_ms - fwd_ms);
    if (spec_ctl_)
      std::fprintf(stderr, "[engine] speculation: %s\n", spec_ctl_->describe().c_str());
  }
}

void LlmEngine::publish_stats() {
  KvCacheStats k = kv_->stats();
  std::lock_guard<std::mutex> lk(stats_mu_);
  stats_.running = scheduler_->num_running();
  stats_.waiting = scheduler_->num_waiting();
  stats_.kv_blocks_used = k.num_blocks - k.free_blocks;
  stats_.prefix_cache_queries = k.prefix_queries;
  stats_.prefix_cache_hits = k.prefix_hits;
  stats_.preemptions = scheduler_->num_preemptions();
}

void LlmEngine::loop() {
  c10::InferenceMode inference;
  // OpenMP's thread count is per calling thread: set it here, in the thread that runs the model
  // (left at its default, steps ran 2-3x slower here).
  torch::set_num_threads(num_threads_);
  kernel_threads_.store(kernel_parallel_threads());
  while (true) {
    bool stop = false;
    drain_inbox(&stop);
    if (stop) break;
    try {
      if (scheduler_->has_unfinished()) step();
    } catch (const std::exception& e) {
      // A failed step fails every request in flight; the engine keeps serving.
      std::vector<uint64_t> ids;
      for (const auto& [id, r] : active_) ids.push_back(id);
      for (uint64_t id : ids) finish(*active_.at(id), FinishReason::kError, "", e.what());
    }
    publish_stats();
  }
  std::vector<uint64_t> ids;
  for (const auto& [id, r] : active_) ids.push_back(id);
  for (uint64_t id : ids) finish(*active_.at(id), FinishReason::kCancelled, "");
  publish_stats();
}

EngineStats LlmEngine::stats() const {
  std::lock_guard<std::mutex> lk(stats_mu_);
  return stats_;
}

void LlmEngine::shutdown() {
  {
    std::lock_guard<std::mutex> lk(inbox_->mu);
    inbox_->stopping = true;
    inbox_->cv.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  // Submissions that never reached the engine thread.
  std::lock_guard<std::mutex> lk(inbox_->mu);
  for (auto& s : inbox_->submissions) {
    if (s.adapter) release_adapter(s.adapter);
    GenerationEvent ev;
    ev.finish = FinishReason::kCancelled;
    ev.prompt_tokens = static_cast<int>(s.req.prompt_tokens.size());
    s.queue->push(std::move(ev));
  }
  inbox_->submissions.clear();
}

void place_engine_model(EngineModel& model, const EngineConfig& cfg) {
  const torch::Device device = resolve_device(cfg.device);
  if (model.torch_ops() && model.device() == device) return;
  if (model.torch_ops()) {
    throw std::logic_error("engine model is already on " + model.device().str() + ", not " +
                           device.str());
  }
  if (!device.is_cpu() || cfg.torch_ops) model.use_torch_ops(device);
}

std::unique_ptr<Engine> Engine::load(const std::string& model_dir, const EngineConfig& cfg) {
  resolve_device(cfg.device);  // an absent device fails before the checkpoint is read
  LoadedEngineModel m =
      load_engine_model(model_dir, engine_dtype_for(cfg.dtype), cfg.verify_checksums);
  place_engine_model(*m.model, cfg);
  std::string name = std::filesystem::path(model_dir).filename().string();
  if (name.empty()) name = std::filesystem::path(model_dir).parent_path().filename().string();
  std::shared_ptr<EngineModel> draft;
  if (!cfg.speculative.draft_model.empty()) {
    draft = load_draft_model(cfg.speculative.draft_model, model_dir, cfg);
  }
  return std::make_unique<LlmEngine>(m.model, m.tokenizer, cfg, name, nullptr, draft);
}

}  // namespace ktl
