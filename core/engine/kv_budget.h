// How many KV blocks the engine's pool gets. An explicit `kv_cache_mb` is a memory budget; the
// default (0) follows the model and `max_num_seqs`: room for every sequence at full context,
// capped at kDefaultKvCapBytes; `kv_cache_blocks` sets the count exactly. Whatever is asked, the
// pool holds at least one full context.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "core/engine/engine.h"
#include "core/model/model_config.h"

namespace ktl {

constexpr int64_t kDefaultKvCapBytes = int64_t(1) << 30;  // 1 GiB

struct KvBudget {
  int num_blocks = 0;
  int64_t bytes = 0;  // num_blocks * bytes per block (fp32 K and V, all layers)
};

KvBudget kv_budget(const ModelConfig& model, const EngineConfig& cfg);

}  // namespace ktl
