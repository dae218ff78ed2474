// ktl bench --prompts FILE: speculative decoding against plain decoding on real prompts, greedy,
// in interleaved rounds in one process (the same weights, two engines): decode tokens/s at each
// stream count, the ratio, how many outputs are identical, acceptance and mean accepted length.
// Not thread-safe (CLI).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/engine/engine.h"

namespace ktl {
class EngineModel;
class Tokenizer;
}  // namespace ktl

namespace ktl::cli {

struct SpeculativeBenchSetup {
  std::shared_ptr<EngineModel> model;
  std::shared_ptr<EngineModel> draft;  // null: prompt lookup
  std::shared_ptr<Tokenizer> tokenizer;
  EngineConfig cfg;  // cfg.speculative: the speculative engine's settings
  std::string name;
  std::vector<int> streams;
  int gen_tokens = 128;
};

// Prints one line (or JSON object with --json) per stream count; returns the exit code.
int run_speculative_bench(const Args& a, const SpeculativeBenchSetup& s);

}  // namespace ktl::cli
