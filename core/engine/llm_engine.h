// LlmEngine: the Engine (core/engine/engine.h) with continuous batching over a paged KV cache,
// on the CPU (fast path: packed kernels) or on any LibTorch device (torch-ops path, see
// engine_model.h); the KV pool lives on the model's device, logits come to the host each step.
//
// One engine thread owns the EngineModel, the KV pool, the KvCacheManager and the Scheduler.
// Its loop: take submissions and cancellations from the inbox; schedule a step; run one forward
// over the flattened batch (prefill chunks + decode tokens) through the paged cache; sample for
// every sequence whose step reached the end of its tokens; detokenize (UTF-8-safe), match stop
// strings, and push events into each request's queue. EOS, max_tokens, the context length and
// stop strings finish a request; cancel() finishes it within one step and frees its blocks.
//
// Thread-safety: as Engine. The engine thread is the only one touching model, cache, scheduler.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/engine/engine.h"
#include "core/engine/engine_model.h"
#include "core/engine/paged_attention.h"
#include "core/engine/step_profile.h"

namespace ktl {

struct EngineInbox;
struct ActiveRequest;
struct ServedAdapter;
struct StepBatch;
class KvCacheManager;
class DraftRunner;
class SpeculationController;
struct SpecDraft;
class Scheduler;
struct SchedulerOutput;

// Resolves cfg.device and, when it is not the CPU or cfg.torch_ops is set, moves `model` to it
// (EngineModel::use_torch_ops). Throws std::invalid_argument naming a device this machine or
// LibTorch build lacks. Call before building the LlmEngine.
void place_engine_model(EngineModel& model, const EngineConfig& cfg);

class LlmEngine : public Engine {
 public:
  // `tokenizer` may be null (tests, random-init benchmarks): text then comes from
  // `token_bytes` (default: ids < 256 are the byte itself, others "<id>"). The model runs where
  // it is (place_engine_model); cfg.device is not read here. `draft` (same vocabulary, same
  // device) proposes tokens when cfg.speculative is on; without it, prompt lookup does.
  // Throws std::invalid_argument when speculation is on with nothing to propose.
  LlmEngine(std::shared_ptr<EngineModel> model, std::shared_ptr<Tokenizer> tokenizer,
            const EngineConfig& cfg, std::string model_name,
            std::function<std::string(int)> token_bytes = {},
            std::shared_ptr<EngineModel> draft = nullptr);
  ~LlmEngine() override;

  std::shared_ptr<RequestHandle> submit(GenerationRequest req) override;
  std::vector<std::shared_ptr<RequestHandle>> submit_n(GenerationRequest req, int n) override;
  EngineStats stats() const override;
  const Tokenizer& tokenizer() const override;
  int max_context() const override;
  std::string model_name() const override { return name_; }
  void shutdown() override;
  // LoRA adapters (engine.h): a registry shared by the HTTP threads (load, unload, submit) and
  // the engine thread (which releases an adapter when a request of it finishes); each request
  // holds its adapter, so an unloaded one lives until its last request ends.
  AdapterInfo load_adapter(const std::string& name, const std::string& dir) override;
  AdapterUnload unload_adapter(const std::string& name) override;
  std::vector<AdapterInfo> adapters() const override;

  const EngineModel& model() const { return *model_; }
  int64_t kv_bytes() const { return kv_bytes_; }  // the KV pool's size
  // Threads ktl's own kernels run on in the engine thread (kernel_threads.h); 0 until it starts.
  int kernel_threads() const { return kernel_threads_.load(); }
  int eos_id() const { return eos_id_; }
  // ktl bench --profile: while on, the engine thread times the parts of every step
  // (step_profile.h) and sums its decode steps (one token per sequence); while off, it takes
  // no timings. Switching on clears the sums.
  void set_step_profiling(bool on);
  // The decode steps' sums since profiling was switched on (or the last reset); reset clears
  // them. Mixed and prefill steps are left out.
  StepProfile decode_step_profile(bool reset = false) const;

 private:
  void loop();
  void drain_inbox(bool* stop);
  void step();
  StepBatch build_batch(const SchedulerOutput& out,
                        const std::unordered_map<uint64_t, SpecDraft>& drafts) const;
  void validate(const GenerationRequest& req) const;
  void handle_sample(ActiveRequest& r, const float* logits);
  // Emits a chosen token (log-probability from `logits_row`, penalties, stop checks, event);
  // false when it finished the request (r is gone then).
  bool emit_token(ActiveRequest& r, int tok, const float* logits_row);
  // Speculative decoding (speculative_decoding.cpp). Before schedule(): how many draft tokens
  // each decoding sequence verifies this step (prompt lookup proposes here).
  void plan_speculation();
  // After schedule(): the draft tokens of every sequence given draft slots.
  std::unordered_map<uint64_t, SpecDraft> propose_drafts(const SchedulerOutput& out);
  // Verifies `d` against the target's logits rows (1 + d.tokens.size() of them, from `rows`)
  // and emits the kept tokens and the next one.
  void verify_speculation(ActiveRequest& r, const float* rows, const SpecDraft& d);
  // The next token under the request's sampler and grammar; -1 when the grammar allows none.
  int sample_token(ActiveRequest& r, const float* logits);
  bool is_end_token(const ActiveRequest& r, int tok) const;
  // Pushes the final event (with `last_token` and its log-probability when given) and forgets
  // the request.
  void finish(ActiveRequest& r, FinishReason why, std::string text, const std::string& error = "",
              std::optional<TokenLogprob> lp = std::nullopt, int last_token = -1);
  // Moves the prompt's log-probabilities into `ev` once they are all known (echo).
  void attach_prompt_logprobs(ActiveRequest& r, GenerationEvent& ev);
  void publish_stats();
  // The adapter a submission names, counted in flight n times (null for the base); throws
  // AdapterNotFound when it is not loaded or is draining.
  std::shared_ptr<ServedAdapter> acquire_adapter(const std::string& name, int n);
  // One request of `a` ended: a draining adapter leaves the registry with its last request.
  void release_adapter(const std::shared_ptr<ServedAdapter>& a);

  std::shared_ptr<EngineModel> model_;
  std::shared_ptr<Tokenizer> tokenizer_;
  EngineConfig cfg_;
  std::string name_;
  std::function<std::string(int)> token_bytes_;
  int eos_id_ = 3;
  int capacity_tokens_ = 0;  // KV pool capacity
  int64_t kv_bytes_ = 0;
  std::atomic<int> kernel_threads_{0};
  int num_threads_ = 1;
  bool profile_ = false;  // KTL_ENGINE_PROFILE set: per-step timings on stderr
  std::atomic<bool> step_profiling_{false};
  mutable std::mutex step_profile_mu_;  // guards decode_profile_
  mutable StepProfile decode_profile_;  // decode_step_profile(true) clears it

  std::unique_ptr<PagedKvPool> pool_;
  std::unique_ptr<KvCacheManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<DraftRunner> draft_;                // speculative decoding's draft model
  std::unique_ptr<SpeculationController> spec_ctl_;  // null: speculation off
  uint64_t draft_seed_ = 0;                           // draft samplers' seeds
  int spec_k_ = 0;      // the k plan_speculation chose for this step
  int spec_batch_ = 0;  // the decoding sequences it chose it for
  std::unordered_map<uint64_t, std::unique_ptr<ActiveRequest>> active_;

  std::shared_ptr<EngineInbox> inbox_;
  mutable std::mutex stats_mu_;
  EngineStats stats_;
  std::thread thread_;
  uint64_t next_seed_ = 0;
  std::vector<float> row_scratch_;    // one logits row, penalised
  std::vector<int> allowed_scratch_;  // the tokens a request's grammar allows this step

  mutable std::mutex adapters_mu_;  // guards adapters_ and every ServedAdapter's counters
  std::map<std::string, std::shared_ptr<ServedAdapter>> adapters_;
  uint64_t next_adapter_salt_ = 1;  // prefix-cache salt of the next load (0 = the base)
};

}  // namespace ktl
