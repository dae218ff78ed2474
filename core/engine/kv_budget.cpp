#include "core/engine/kv_budget.h"

#include <algorithm>

namespace ktl {

KvBudget kv_budget(const ModelConfig& m, const EngineConfig& cfg) {
  const int64_t per_block = 2LL * m.num_layers * cfg.block_size * m.num_kv_heads * m.head_dim() *
                            static_cast<int64_t>(sizeof(float));
  const int64_t blocks_per_seq = (m.max_seq_length + cfg.block_size - 1) / cfg.block_size;
  const int64_t min_blocks = blocks_per_seq + 1;
  int64_t blocks;
  if (cfg.kv_cache_blocks > 0) {
    blocks = cfg.kv_cache_blocks;
  } else if (cfg.kv_cache_mb > 0) {
    blocks = int64_t(cfg.kv_cache_mb) * (1 << 20) / per_block;
  } else {
    blocks = std::min(int64_t(cfg.max_num_seqs) * blocks_per_seq, kDefaultKvCapBytes / per_block);
  }
  blocks = std::max(blocks, min_blocks);
  return {static_cast<int>(blocks), blocks * per_block};
}

}  // namespace ktl
