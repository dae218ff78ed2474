// Continuous-batching scheduler (vLLM v1 style), without tensors or HTTP.
//
// Every request has a token list (prompt, then generated tokens) and num_computed_tokens (how
// many of them have K/V in the cache). Each step, schedule() hands out a token budget
// (max_batched_tokens): first to running requests in admission order (one token for a decoding
// request, the rest of the prompt chunked to the budget for one still prefilling), then to
// waiting requests in FCFS order, up to max_num_seqs running. A step whose computation reaches
// the end of a request's tokens samples its next token.
//
// When the KV pool has no free block for a running request, the newest running request is
// preempted: its blocks are freed and it goes back to the head of the queue, to be recomputed
// (its full blocks usually survive in the prefix cache, which makes that cheap).
//
// Forks (n samples of one prompt): a follower added with `share_prompt_of` waits, without
// blocks and without holding up the queue, until its leader has computed the whole prompt; it
// then attaches the leader's full blocks from the prefix cache and computes only the last,
// partial block itself (at most block_size tokens), so the prompt is computed once.
//
// RequestState transitions:
//   kWaiting   -> kRunning    admitted (blocks allocated)
//   kRunning   -> kPreempted  blocks ran out; freed, queued at the head
//   kPreempted -> kRunning    re-admitted, recomputes from the prefix cache / from scratch
//   any        -> kFinished   finish() or cancel(); blocks freed at once, request forgotten
//
// Speculative decoding: a decoding request the engine marked with set_speculation(id, k) is
// scheduled with 1 + k rows (its last token, then k draft tokens the engine fills in), when the
// budget and the pool allow; the step's complete_step() counts only the real token as computed,
// and commit_speculation() then counts the draft tokens verification kept and gives the blocks
// of rejected ones back to the pool. Only verified tokens are ever published in the prefix
// cache.
//
// Thread-safety: none; the engine thread owns the scheduler.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/scheduling/kv_cache_manager.h"

namespace ktl {

enum class RequestState { kWaiting, kRunning, kPreempted, kFinished };
const char* to_string(RequestState s);

struct SchedulerConfig {
  int max_num_seqs = 16;         // running sequences at most
  int max_batched_tokens = 512;  // tokens computed in one step (prefill chunks + decodes)
};

struct SchedRequest {
  uint64_t id = 0;
  std::vector<int> tokens;  // prompt followed by generated tokens
  int num_prompt_tokens = 0;
  int num_computed_tokens = 0;  // tokens whose K/V are in the cache
  int num_cached_tokens = 0;    // prompt tokens served by the prefix cache at first admission
  int num_preemptions = 0;
  bool use_prefix_cache = true;  // false: never attach cached blocks (prompt logprobs)
  uint64_t share_prompt_of = 0;  // a fork's leader; 0 = none
  uint64_t cache_salt = 0;       // prefix-cache namespace (the LoRA adapter); 0 = the base
  int num_spec_wanted = 0;       // draft tokens to verify in its next decoding step
  RequestState state = RequestState::kWaiting;
};

// One sequence's share of a step.
struct ScheduledSeq {
  uint64_t id = 0;
  int start = 0;                 // position of the first token computed this step
  int num_tokens = 0;            // tokens computed this step: tokens[start, start + num_tokens)
  bool sample = false;           // the step reaches the end of the known tokens
  int num_spec = 0;              // the last num_spec of num_tokens are draft slots (no tokens yet)
  std::vector<int> block_table;  // covers start + num_tokens tokens
};

struct SchedulerOutput {
  std::vector<ScheduledSeq> seqs;
  std::vector<uint64_t> preempted;  // preempted during this schedule() call
  int num_tokens = 0;               // sum of seqs[i].num_tokens
  bool empty() const { return seqs.empty(); }
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& cfg, KvCacheManager* kv);

  // Queues a request (FCFS). `prompt` must not be empty; ids must be unique. A request with
  // use_prefix_cache false recomputes its whole prompt; share_prompt_of names a fork's leader;
  // cache_salt keeps its cached blocks apart from other salts' (KvCacheManager), also after a
  // preemption.
  void add(uint64_t id, std::vector<int> prompt, bool use_prefix_cache = true,
           uint64_t share_prompt_of = 0, uint64_t cache_salt = 0);
  SchedulerOutput schedule();
  // After the model computed `out`: advances num_computed_tokens and publishes full blocks in
  // the prefix cache. Requests finished or cancelled since schedule() are skipped.
  void complete_step(const SchedulerOutput& out);
  // Appends a sampled token to a running request.
  void append_token(uint64_t id, int token);
  // Draft tokens to verify in the request's next decoding step (0: none). Kept until changed;
  // ignored while the request prefills. Unknown ids are ignored.
  void set_speculation(uint64_t id, int num_tokens);
  // After a speculative step's complete_step() and the append_token() of every emitted token:
  // the first `accepted` draft tokens (now in `tokens`) have K/V, so they count as computed;
  // blocks past the computed tokens go back to the pool. Unknown ids are ignored.
  void commit_speculation(uint64_t id, int accepted);
  // Removes a request in any state and frees its blocks at once. False when unknown.
  bool finish(uint64_t id);
  bool cancel(uint64_t id) { return finish(id); }

  const SchedRequest* find(uint64_t id) const;
  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  bool has_unfinished() const { return !running_.empty() || !waiting_.empty(); }
  uint64_t num_preemptions() const { return num_preemptions_; }

 private:
  void schedule_running(SchedulerOutput* out, int* budget);
  void schedule_waiting(SchedulerOutput* out, int* budget);
  void preempt_newest(SchedulerOutput* out);
  void emit(SchedRequest* r, int num_new, SchedulerOutput* out, int num_spec = 0);
  bool waits_for_leader(const SchedRequest& r) const;

  SchedulerConfig cfg_;
  KvCacheManager* kv_;
  std::unordered_map<uint64_t, std::unique_ptr<SchedRequest>> requests_;
  std::vector<SchedRequest*> running_;  // admission order; back = newest
  std::deque<SchedRequest*> waiting_;
  uint64_t num_preemptions_ = 0;
};

}  // namespace ktl
