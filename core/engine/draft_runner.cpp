#include "core/engine/draft_runner.h"

#include "core/base/file_util.h"
#include "core/engine/engine_checkpoint.h"
#include "core/engine/llm_engine.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace ktl {

std::shared_ptr<EngineModel> load_draft_model(const std::string& draft_dir,
                                              const std::string& target_dir,
                                              const EngineConfig& cfg) {
  const auto tok = [](const std::string& dir) {
    return read_file((std::filesystem::path(dir) / "tokenizer.model").string());
  };
  if (tok(draft_dir) != tok(target_dir)) {
    throw std::invalid_argument("draft model " + draft_dir +
                                " has another tokenizer than the target " + target_dir +
                                ": distil the draft from this model (ktl distill --teacher)");
  }
  LoadedEngineModel m = load_engine_model(draft_dir, engine_dtype_for(cfg.speculative.draft_dtype),
                                          cfg.verify_checksums);
  place_engine_model(*m.model, cfg);
  return m.model;
}

DraftRunner::DraftRunner(std::shared_ptr<const EngineModel> draft, const ModelConfig& target,
                         int num_blocks, int block_size)
    : model_(std::move(draft)) {
  const ModelConfig& dc = model_->config();
  if (dc.vocab_size != target.vocab_size) {
    throw std::invalid_argument("draft model's vocabulary has " + std::to_string(dc.vocab_size) +
                                " tokens, the target's " + std::to_string(target.vocab_size) +
                                ": a draft must share the target's tokenizer");
  }
  pool_ = PagedKvPool(dc.num_layers, num_blocks, block_size, dc.num_kv_heads, dc.head_dim(),
                      model_->device());
  kv_bytes_ =
      PagedKvPool::bytes_per_block(dc.num_layers, block_size, dc.num_kv_heads, dc.head_dim()) *
      num_blocks;
}

std::vector<DraftRunner::Proposal> DraftRunner::propose(std::vector<Job>& jobs) {
  const int V = model_->config().vocab_size;
  std::vector<Proposal> out(jobs.size());
  int max_k = 0;
  for (const Job& j : jobs) max_k = std::max(max_k, j.k);
  std::vector<float> row(V);
  for (int step = 0; step < max_k; ++step) {
    // Step 0: each sequence's uncomputed tokens (its last one at least); then its newest draft.
    std::vector<int> tokens;
    std::vector<AttnSeq> seqs;
    std::vector<int> logit_rows;
    std::vector<size_t> who;
    for (size_t i = 0; i < jobs.size(); ++i) {
      Job& j = jobs[i];
      if (step >= j.k) continue;
      const int len = static_cast<int>(j.tokens->size());
      AttnSeq a;
      a.row = static_cast<int>(tokens.size());
      a.block_table = *j.block_table;
      if (step == 0) {
        a.start = std::min(j.computed, len - 1);
        tokens.insert(tokens.end(), j.tokens->begin() + a.start, j.tokens->end());
      } else {
        a.start = len + step - 1;
        tokens.push_back(out[i].tokens.back());
      }
      a.num_tokens = static_cast<int>(tokens.size()) - a.row;
      logit_rows.push_back(static_cast<int>(tokens.size()) - 1);
      seqs.push_back(std::move(a));
      who.push_back(i);
    }
    // [R, V] fp32 on the host
    const torch::Tensor logits = model_->forward(tokens, seqs, pool_, logit_rows).contiguous();
    const float* lp = logits.data_ptr<float>();
    for (size_t r = 0; r < who.size(); ++r) {
      Job& j = jobs[who[r]];
      Proposal& p = out[who[r]];
      std::copy(lp + r * V, lp + (r + 1) * V, row.begin());
      const TokenDistribution& q = j.sampler.distribution(row.data(), V);
      const int tok = j.sampler.draw(q);
      if (!j.sampler.greedy()) p.q.push_back(q);
      p.tokens.push_back(tok);
      j.sampler.accept(tok);
    }
  }
  for (size_t i = 0; i < jobs.size(); ++i)
    out[i].computed = static_cast<int>(jobs[i].tokens->size()) + jobs[i].k - 1;
  return out;
}

}  // namespace ktl
