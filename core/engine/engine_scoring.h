// Scoring fixed token windows through the engine's forward, so held-out loss and bits per
// character can be measured in the compute format that serves (fp32, bf16 or int8 weights):
// `ktl eval --dtype` scores the same windows the training path's evaluate() does.
//
// Thread-safety: as EngineModel::forward (one caller per model at a time).
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "core/engine/engine_model.h"

namespace ktl {

struct EngineNll {
  double nats = 0;     // summed next-token cross-entropy
  int64_t tokens = 0;  // target tokens scored
};

// `windows`: [b, T+1] token ids (EvalBatches::batch); row r's inputs are its columns [0, T),
// its targets [1, T + 1). All b rows go through one forward step as b fresh sequences (a KV
// pool sized for them, made and dropped here). Throws std::invalid_argument on a bad shape or
// T above the model's context.
EngineNll engine_window_nll(const EngineModel& model, const torch::Tensor& windows);

}  // namespace ktl
