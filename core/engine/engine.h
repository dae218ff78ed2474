// The inference engine: one thread owns the model, the paged KV cache, the scheduler and all
// sequences; callers talk to it through thread-safe queues.
//
// Request lifecycle (RequestState): kWaiting -> kRunning -> kFinished; kRunning -> kPreempted
// (blocks freed, recomputed later) -> kWaiting; any state -> kFinished on cancel.
//
// Thread-safety: every public method of Engine is safe to call from any thread.
// RequestHandle::next() is called by one consumer thread per request.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/scheduling/sampler.h"
#include "core/scheduling/sampling_params.h"
#include "core/speculative/speculative_config.h"

namespace ktl {

class Tokenizer;
namespace grammar {
class CompiledGrammar;
}

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
const char* to_string(FinishReason r);  // "stop", "length", "cancelled", "error"

struct GenerationRequest {
  std::vector<int> prompt_tokens;  // already tokenized (with BOS when wanted)
  SamplingParams sampling;
  // Structured output: every sampled token keeps the text a sentence of this grammar (its
  // logits are masked before sampling); end-of-sequence only once the sentence is complete, and
  // a finished sentence ends the request ("stop"). Null: unconstrained.
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
  // The LoRA adapter (Engine::load_adapter's name) the request runs under; empty: the base.
  std::string adapter;
};

// A LoRA adapter loaded into an engine (Engine::adapters()).
struct AdapterInfo {
  std::string name;  // what requests name it by
  std::string path;  // the PEFT directory it was loaded from
  int rank = 0;
  double alpha = 0;
  std::vector<std::string> targets;  // short names: q, k, v, o, gate, up, down
  bool draining = false;             // unloaded, finishing its last requests
  int in_flight = 0;                 // requests admitted and not finished
  uint64_t requests_total = 0;       // requests it has served since it was loaded
  double load_ms = 0;                // reading the files and converting the weights
  int64_t bytes = 0;                 // its weights in the engine (fp32)
};

// load_adapter() on a name already in use (an adapter, draining or not, or the base model).
struct AdapterConflict : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// submit() naming an adapter that is not loaded or is being unloaded.
struct AdapterNotFound : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
enum class AdapterUnload { kNotFound, kUnloaded, kDraining };

// One event from the engine to a request's consumer.
struct GenerationEvent {
  std::string text;                    // new complete UTF-8 text (may be empty)
  std::vector<int> token_ids;          // tokens produced since the previous event
  std::vector<TokenLogprob> logprobs;  // one per token_ids entry when asked for
  // Echo: the prompt's log-probabilities, on the first event; entry 0 (nothing before it to
  // predict it) has logprob NaN and no rivals.
  std::vector<TokenLogprob> prompt_logprobs;
  FinishReason finish = FinishReason::kNone;  // set on the last event
  std::string error;                          // when finish == kError
  int prompt_tokens = 0;                      // usage, filled on the last event
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
  double ttft_ms = 0;            // filled on the last event
};

struct EngineConfig {
  int kv_cache_mb = 0;           // KV pool budget; 0 = max_num_seqs full contexts, <= 1 GiB
  int kv_cache_blocks = 0;       // exact pool size in blocks when > 0 (tests); overrides the MB
  int block_size = 16;           // tokens per KV block
  int max_num_seqs = 16;         // sequences in one step
  int max_batched_tokens = 512;  // prefill chunk budget per step
  int max_queue = 256;           // waiting requests before submit() refuses
  bool enable_prefix_cache = true;
  std::string device = "auto";  // auto | cpu | cuda | mps (auto: cuda, then mps, then cpu)
  bool torch_ops = false;       // torch-ops path on the CPU too (always used off the CPU)
  std::string dtype = "auto";   // auto (int8) | fp32 | bf16 | int8 (weight-only)
  int num_threads = 0;          // 0 = all cores
  // Check every checkpoint file's sha256 before loading (~0.75 s per GB with SHA-NI); false
  // (--no-verify) checks only that the files are there.
  bool verify_checksums = true;
  // Speculative decoding (core/speculative/): draft tokens from a draft model
  // (speculative.draft_model, loaded by Engine::load) or prompt lookup, verified in one step.
  // Off by default.
  SpeculativeConfig speculative;
};

struct EngineStats {
  int running = 0;
  int waiting = 0;
  int kv_blocks_total = 0;
  int kv_blocks_used = 0;
  uint64_t prompt_tokens_total = 0;
  uint64_t generated_tokens_total = 0;
  uint64_t prefix_cache_queries = 0;  // prompt tokens looked up in the prefix cache
  uint64_t prefix_cache_hits = 0;     // of those, served from cache
  uint64_t preemptions = 0;
  uint64_t steps = 0;
  // Speculative decoding: draft tokens proposed and kept, sequence-steps that verified a draft
  // (mean accepted length = spec_accepted / spec_verifications).
  uint64_t spec_proposed = 0;
  uint64_t spec_accepted = 0;
  uint64_t spec_verifications = 0;
};

// A live request: read events until one has finish != kNone.
class RequestHandle {
 public:
  virtual ~RequestHandle() = default;
  // Blocks until an event is ready or `timeout` passes (returns false then).
  virtual bool next(GenerationEvent* out, std::chrono::milliseconds timeout) = 0;
  virtual void cancel() = 0;  // the engine frees its blocks within one step
  virtual uint64_t id() const = 0;
};

class Engine {
 public:
  // Loads a checkpoint directory (config.json, model.safetensors, tokenizer.model) and starts
  // the engine thread. Throws with a clear message on a missing or corrupt checkpoint.
  static std::unique_ptr<Engine> load(const std::string& model_dir, const EngineConfig& cfg);
  virtual ~Engine() = default;

  // Refuses (throws std::invalid_argument) a prompt longer than the context, an empty prompt,
  // bad sampling values; throws std::runtime_error("queue full") when max_queue is reached.
  virtual std::shared_ptr<RequestHandle> submit(GenerationRequest req) = 0;
  // n samples of one prompt (seeds seed, seed + 1, ... when a seed is set). The default submits
  // n requests; LlmEngine computes the prompt once and the others share its full KV blocks.
  virtual std::vector<std::shared_ptr<RequestHandle>> submit_n(GenerationRequest req, int n);
  virtual EngineStats stats() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual int max_context() const = 0;
  virtual std::string model_name() const = 0;

  // LoRA adapters, served beside the base model in the same batches. load_adapter reads the
  // PEFT directory `dir` (adapter_config.json + adapter_model.safetensors) on the calling thread
  // (the engine thread never waits for it) and makes `name` available to requests once it
  // returns. Throws AdapterConflict on a name in use, std::invalid_argument on a bad name,
  // std::runtime_error with the loader's message on bad files or a base it does not fit.
  virtual AdapterInfo load_adapter(const std::string& name, const std::string& dir);
  // New requests can no longer name it; requests in flight finish on it, and it is freed when
  // the last one ends (kDraining until then; kUnloaded when none was in flight).
  virtual AdapterUnload unload_adapter(const std::string& name);
  virtual std::vector<AdapterInfo> adapters() const { return {}; }
  // Stops accepting, finishes or cancels in-flight requests, joins the engine thread.
  virtual void shutdown() = 0;
};

inline AdapterInfo Engine::load_adapter(const std::string&, const std::string&) {
  throw std::runtime_error("this engine does not serve LoRA adapters");
}
inline AdapterUnload Engine::unload_adapter(const std::string&) {
  return AdapterUnload::kNotFound;
}

inline std::vector<std::shared_ptr<RequestHandle>> Engine::submit_n(GenerationRequest req, int n) {
  std::vector<std::shared_ptr<RequestHandle>> out;
  try {
    for (int k = 0; k < n; ++k) {
      GenerationRequest r = req;
      if (r.sampling.seed) r.sampling.seed = *r.sampling.seed + static_cast<uint64_t>(k);
      out.push_back(submit(std::move(r)));
    }
  } catch (...) {
    for (auto& h : out) h->cancel();
    throw;
  }
  return out;
}

}  // namespace ktl
