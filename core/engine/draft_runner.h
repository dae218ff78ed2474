// The draft model of speculative decoding: a small model with the target's vocabulary that
// proposes k tokens per sequence, batched over every speculating sequence of a step.
//
// Its paged KV pool mirrors the target's (same block count and size), so a sequence's block
// table from the KvCacheManager indexes both pools and the draft needs no block bookkeeping of
// its own: rejected positions are released with the target's, and a preempted sequence loses
// both. What the draft has computed is tracked per sequence by the caller (`computed`), since
// a block attached from the prefix cache holds the target's K/V but maybe not the draft's: a
// sequence's first proposal recomputes its context in the draft (cheap: the draft is small).
//
// Thread-safety: the engine thread owns it (forward passes write the pool).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/engine/engine_model.h"
#include "core/engine/paged_attention.h"
#include "core/scheduling/sampler.h"

namespace ktl {

// Loads the draft checkpoint `draft_dir` for the target checkpoint `target_dir` in
// cfg.speculative.draft_dtype on the engine's device. Throws std::invalid_argument when its tokenizer.model differs from the
// target's (the same vocabulary size is not enough: the ids must mean the same pieces).
std::shared_ptr<EngineModel> load_draft_model(const std::string& draft_dir,
                                              const std::string& target_dir,
                                              const EngineConfig& cfg);

class DraftRunner {
 public:
  // Throws std::invalid_argument when the draft's vocabulary differs from `target`'s.
  DraftRunner(std::shared_ptr<const EngineModel> draft, const ModelConfig& target, int num_blocks,
              int block_size);

  struct Job {
    const std::vector<int>* tokens = nullptr;       // the sequence: prompt + generated
    int computed = 0;                               // tokens with K/V in the draft's pool
    const std::vector<int>* block_table = nullptr;  // covers tokens->size() + k - 1 positions
    int k = 0;                                      // tokens to propose (>= 1)
    Sampler sampler;  // the request's, reseeded: penalties see each draft token
  };
  struct Proposal {
    std::vector<int> tokens;           // k draft tokens
    std::vector<TokenDistribution> q;  // what each was drawn from (empty when greedy)
    int computed = 0;                  // tokens with draft K/V now: tokens->size() + k - 1
  };
  // k draft forward passes at most (the first also catches each sequence up on the tokens it
  // has not computed).
  std::vector<Proposal> propose(std::vector<Job>& jobs);

  const EngineModel& model() const { return *model_; }
  int64_t kv_bytes() const { return kv_bytes_; }

 private:
  std::shared_ptr<const EngineModel> model_;
  PagedKvPool pool_;
  int64_t kv_bytes_ = 0;
};

}  // namespace ktl
