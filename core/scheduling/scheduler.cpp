#include "core/scheduling/scheduler.h"

#include <algorithm>
#include <cstddef>
#include <stdexcept>

namespace ktl {

const char* to_string(RequestState s) {
  switch (s) {
    case RequestState::kWaiting:
      return "waiting";
    case RequestState::kRunning:
      return "running";
    case RequestState::kPreempted:
      return "preempted";
    case RequestState::kFinished:
      return "finished";
  }
  return "?";
}

Scheduler::Scheduler(const SchedulerConfig& cfg, KvCacheManager* kv) : cfg_(cfg), kv_(kv) {
  if (cfg_.max_num_seqs <= 0 || cfg_.max_batched_tokens <= 0) {
    throw std::invalid_argument("Scheduler: max_num_seqs and max_batched_tokens must be positive");
  }
}

void Scheduler::add(uint64_t id, std::vector<int> prompt, bool use_prefix_cache,
                    uint64_t share_prompt_of, uint64_t cache_salt) {
  if (prompt.empty()) throw std::invalid_argument("Scheduler::add: empty prompt");
  if (requests_.count(id)) throw std::invalid_argument("Scheduler::add: duplicate request id");
  auto r = std::make_unique<SchedRequest>();
  r->id = id;
  r->num_prompt_tokens = static_cast<int>(prompt.size());
  r->tokens = std::move(prompt);
  r->use_prefix_cache = use_prefix_cache;
  r->share_prompt_of = share_prompt_of;
  r->cache_salt = cache_salt;
  waiting_.push_back(r.get());
  requests_.emplace(id, std::move(r));
}

void Scheduler::emit(SchedRequest* r, int num_new, SchedulerOutput* out, int num_spec) {
  ScheduledSeq s;
  s.id = r->id;
  s.start = r->num_computed_tokens;
  s.num_tokens = num_new;
  s.num_spec = num_spec;
  s.sample = r->num_computed_tokens + num_new - num_spec == static_cast<int>(r->tokens.size());
  s.block_table = kv_->block_table(r->id);
  out->num_tokens += num_new;
  out->seqs.push_back(std::move(s));
}

void Scheduler::preempt_newest(SchedulerOutput* out) {
  SchedRequest* victim = running_.back();
  running_.pop_back();
  kv_->free(victim->id);
  victim->num_computed_tokens = 0;
  victim->state = RequestState::kPreempted;
  ++victim->num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(victim);
  out->preempted.push_back(victim->id);
}

void Scheduler::schedule_running(SchedulerOutput* out, int* budget) {
  for (size_t i = 0; i < running_.size() && *budget > 0;) {
    SchedRequest* r = running_[i];
    const int remaining = static_cast<int>(r->tokens.size()) - r->num_computed_tokens;
    const int num_new = std::min(remaining, *budget);
    if (num_new <= 0) {
      ++i;
      continue;
    }
    // A decoding request with draft tokens: 1 + k rows, if the budget and free blocks allow
    // (speculation never preempts anyone).
    if (remaining == 1 && r->num_spec_wanted > 0 && *budget > 1) {
      const int spec = std::min(r->num_spec_wanted, *budget - 1);
      if (kv_->allocate_slots(r->id, r->num_computed_tokens + 1 + spec)) {
        emit(r, 1 + spec, out, spec);
        *budget -= 1 + spec;
        ++i;
        continue;
      }
    }
    bool self_preempted = false;
    while (!kv_->allocate_slots(r->id, r->num_computed_tokens + num_new)) {
      self_preempted = running_.back() == r;
      preempt_newest(out);
      if (self_preempted) break;
    }
    if (self_preempted) break;
    emit(r, num_new, out);
    *budget -= num_new;
    ++i;
  }
}

bool Scheduler::waits_for_leader(const SchedRequest& r) const {
  if (r.share_prompt_of == 0 || r.state != RequestState::kWaiting) return false;
  const SchedRequest* leader = find(r.share_prompt_of);
  return leader && leader->num_computed_tokens < leader->num_prompt_tokens;
}

void Scheduler::schedule_waiting(SchedulerOutput* out, int* budget) {
  size_t i = 0;
  while (i < waiting_.size() && *budget > 0 &&
         static_cast<int>(running_.size()) < cfg_.max_num_seqs) {
    SchedRequest* r = waiting_[i];
    if (waits_for_leader(*r)) {  // holds no blocks: others may pass it
      ++i;
      continue;
    }
    const bool first_admission = r->state == RequestState::kWaiting;
    const int cached = r->use_prefix_cache ? kv_->attach_cached_prefix(r->id, r->tokens, r->cache_salt)
                                          : 0;
    const int num_new = std::min(static_cast<int>(r->tokens.size()) - cached, *budget);
    if (!kv_->allocate_slots(r->id, cached + num_new)) {
      kv_->free(r->id);  // FCFS: the head waits for blocks, nobody overtakes it
      break;
    }
    r->num_computed_tokens = cached;
    if (first_admission) r->num_cached_tokens = cached;
    r->state = RequestState::kRunning;
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
    running_.push_back(r);
    emit(r, num_new, out);
    *budget -= num_new;
  }
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  int budget = cfg_.max_batched_tokens;
  schedule_running(&out, &budget);
  // After a preemption the pool is short: admitting new work would only thrash.
  if (out.preempted.empty()) schedule_waiting(&out, &budget);
  return out;
}

void Scheduler::complete_step(const SchedulerOutput& out) {
  for (const ScheduledSeq& s : out.seqs) {
    auto it = requests_.find(s.id);
    if (it == requests_.end()) continue;
    SchedRequest* r = it->second.get();
    if (r->state != RequestState::kRunning || r->num_computed_tokens != s.start) continue;
    r->num_computed_tokens += s.num_tokens - s.num_spec;
    kv_->cache_full_blocks(r->id, r->tokens, r->num_computed_tokens, r->cache_salt);
  }
}

void Scheduler::append_token(uint64_t id, int token) {
  auto it = requests_.find(id);
  if (it == requests_.end()) throw std::invalid_argument("Scheduler::append_token: unknown id");
  it->second->tokens.push_back(token);
}

void Scheduler::set_speculation(uint64_t id, int num_tokens) {
  auto it = requests_.find(id);
  if (it != requests_.end()) it->second->num_spec_wanted = std::max(0, num_tokens);
}

void Scheduler::commit_speculation(uint64_t id, int accepted) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  SchedRequest* r = it->second.get();
  if (r->state != RequestState::kRunning) return;
  const int limit = static_cast<int>(r->tokens.size()) - 1;  // the newest token has no K/V yet
  r->num_computed_tokens = std::min(r->num_computed_tokens + std::max(0, accepted), limit);
  kv_->truncate(r->id, r->num_computed_tokens);
  kv_->cache_full_blocks(r->id, r->tokens, r->num_computed_tokens, r->cache_salt);
}

bool Scheduler::finish(uint64_t id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  SchedRequest* r = it->second.get();
  running_.erase(std::remove(running_.begin(), running_.end(), r), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), r), waiting_.end());
  kv_->free(id);
  r->state = RequestState::kFinished;
  requests_.erase(it);
  return true;
}

const SchedRequest* Scheduler::find(uint64_t id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

}  // namespace ktl
