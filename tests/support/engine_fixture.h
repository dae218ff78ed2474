// Shared by the engine tests: a tiny random-init model whose greedy choices have clear margins,
// and random prompt tokens.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/model/model.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl::testing {

// Vocabulary 320, FFN 128.
inline ModelConfig engine_tiny_config() {
  ModelConfig c = tiny_model_config(320);
  c.intermediate_size = 128;
  return c;
}

// Random weights with the matrices scaled up 6x, so greedy choices have clear margins.
inline Transformer margin_model(uint64_t seed = 1) {
  Transformer m(engine_tiny_config());
  m->init_weights(seed);
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) {
    if (p.dim() == 2) p.mul_(6.0);
  }
  return m;
}

// n token ids in [4, 304).
inline std::vector<int> random_tokens(int n, uint64_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> v(n);
  for (auto& t : v) t = 4 + static_cast<int>(rng() % 300);
  return v;
}

}  // namespace ktl::testing
