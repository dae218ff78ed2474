// LlmEngine's speculative decoding: planning draft slots, proposing draft tokens (prompt lookup
// or the draft model), and verifying them against the target's logits (core/speculative/).
#include <algorithm>
#include <unordered_map>

#include "core/engine/active_request.h"
#include "core/engine/draft_runner.h"
#include "core/engine/llm_engine.h"
#include "core/scheduling/scheduler.h"
#include "core/speculative/prompt_lookup.h"
#include "core/speculative/rejection_sampler.h"
#include "core/speculative/speculation_controller.h"

namespace ktl {

void LlmEngine::plan_speculation() {
  // Decoding sequences: their whole context computed but the newest token.
  std::vector<std::pair<ActiveRequest*, const SchedRequest*>> decoding;
  for (auto& [id, r] : active_) {
    const SchedRequest* s = scheduler_->find(id);
    if (!s || s->state != RequestState::kRunning) continue;
    if (s->num_computed_tokens + 1 != static_cast<int>(s->tokens.size())) continue;
    decoding.emplace_back(r.get(), s);
  }
  const int k = spec_ctl_->choose_k(static_cast<int>(decoding.size()));
  spec_k_ = k;
  spec_batch_ = static_cast<int>(decoding.size());
  const int context = std::min(max_context(), capacity_tokens_);
  const SpeculativeConfig& sc = cfg_.speculative;
  for (auto& [r, s] : decoding) {
    const int len = static_cast<int>(s->tokens.size());
    // A step emits up to k + 1 tokens, at positions below the context. Structured output keeps
    // one token per step: its grammar state cannot be rolled back past a rejected draft.
    int n = r->matcher ? 0 : std::min({k, r->max_new - r->generated - 1, context - len});
    n = std::max(n, 0);
    if (n > 0 && !draft_) {
      r->lookup_draft = prompt_lookup(s->tokens, sc.prompt_lookup, sc.prompt_lookup_min, n);
      n = static_cast<int>(r->lookup_draft.size());
    }
    scheduler_->set_speculation(r->id, n);
  }
}

std::unordered_map<uint64_t, SpecDraft> LlmEngine::propose_drafts(const SchedulerOutput& out) {
  std::unordered_map<uint64_t, SpecDraft> drafts;
  std::vector<DraftRunner::Job> jobs;
  std::vector<uint64_t> ids;
  for (const ScheduledSeq& s : out.seqs) {
    if (s.num_spec <= 0) continue;
    auto it = active_.find(s.id);
    if (it == active_.end()) continue;
    ActiveRequest& r = *it->second;
    const SchedRequest* sr = scheduler_->find(s.id);
    SpecDraft& d = drafts[s.id];
    d.len_before = static_cast<int>(sr->tokens.size());
    if (!draft_) {
      d.tokens.assign(r.lookup_draft.begin(),
                      r.lookup_draft.begin() +
                          std::min<size_t>(r.lookup_draft.size(), static_cast<size_t>(s.num_spec)));
      continue;
    }
    DraftRunner::Job j{&sr->tokens, r.draft_computed, &s.block_table, s.num_spec, r.sampler};
    j.sampler.reseed(draft_seed_++);  // the draft's draws must not replay the request's
    jobs.push_back(std::move(j));
    ids.push_back(s.id);
  }
  if (jobs.empty()) return drafts;
  std::vector<DraftRunner::Proposal> props = draft_->propose(jobs);
  for (size_t i = 0; i < ids.size(); ++i) {
    SpecDraft& d = drafts[ids[i]];
    d.tokens = std::move(props[i].tokens);
    d.q = std::move(props[i].q);
    d.draft_computed = props[i].computed;
  }
  return drafts;
}

void LlmEngine::verify_speculation(ActiveRequest& r, const float* rows, const SpecDraft& d) {
  const int V = model_->config().vocab_size;
  const int n = static_cast<int>(d.tokens.size());
  const uint64_t id = r.id;
  int accepted = 0;
  bool alive = true;
  for (int j = 0; j <= n && alive; ++j) {
    const float* row = rows + static_cast<size_t>(j) * V;
    if (j == n) {  // every draft token kept: the last row gives one more
      handle_sample(r, row);
      break;
    }
    DraftVerdict v;
    {
      const StepTimer sampling(StepPart::kSampling);
      row_scratch_.assign(row, row + V);
      const TokenDistribution& p = r.sampler.distribution(row_scratch_.data(), V);
      v = verify_draft_token(p, d.q.empty() ? nullptr : &d.q[j], d.tokens[j], r.sampler);
    }
    alive = emit_token(r, v.token, row);
    if (!v.accepted) break;
    ++accepted;
  }
  spec_ctl_->record_verification(n, accepted);
  {
    std::lock_guard<std::mutex> lk(stats_mu_);
    stats_.spec_proposed += static_cast<uint64_t>(n);
    stats_.spec_accepted += static_cast<uint64_t>(accepted);
    ++stats_.spec_verifications;
  }
  if (active_.count(id) == 0) return;  // finished on one of the tokens
  scheduler_->commit_speculation(id, accepted);
  // The draft computed the context and its drafts but the last: those kept stay valid.
  if (draft_) r.draft_computed = std::min(d.draft_computed, d.len_before + accepted);
}

}  // namespace ktl
