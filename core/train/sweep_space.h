// A hyperparameter search space (sweep.yaml) and the trials drawn from it. No LibTorch: the jobs
// daemon validates sweep specs with it. Plain data and pure functions; thread-safe.
//
// sweep.yaml:
//   method: random            # random | grid
//   trials: 16                # random: trials to draw; grid: cap on the combinations (0 = all)
//   seed: 1                   # random draws
//   budget_minutes: 30        # wall clock for the whole sweep, across resumes; 0 = none
//   halving: {min_steps: 50, max_steps: 400, eta: 2}   # rungs 50, 100, 200, 400
//   params:
//     learning_rate: {min: 1.0e-4, max: 3.0e-3, log: true}   # a range (random search only)
//     warmup_steps: [20, 50, 100]                           # a list of choices
//     weight_decay: 0.05                                     # a fixed value
//     model.hidden_size: [192, 256]                          # model shape keys: "model." prefix
// Training keys are those of training.yaml (core/train/training_config.h); max_steps is set by
// the halving schedule and may not be swept. Model keys: hidden_size, num_layers, num_heads,
// num_kv_heads, intermediate_size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/model/model_config.h"
#include "core/train/training_config.h"

namespace ktl {

enum class SearchMethod { kRandom, kGrid };

struct SweepParam {
  std::string key;                  // "learning_rate" or "model.hidden_size"
  std::vector<std::string> values;  // choices (a fixed value is one choice); empty for a range
  double min = 0, max = 0;          // range bounds (values empty)
  bool log = false;                 // range sampled uniformly in log space
  bool integer = false;             // range of integers (both bounds written as integers)
};

struct HalvingSchedule {
  int64_t min_steps = 50;   // steps of the first rung
  int64_t max_steps = 400;  // steps of the last rung (every trial's LR schedule ends here)
  int eta = 2;              // rung i+1 trains eta times longer; 1/eta of the trials go on
  // min_steps, min_steps*eta, ... capped at and ending with max_steps.
  std::vector<int64_t> rungs() const;
};

struct SweepSpace {
  SearchMethod method = SearchMethod::kRandom;  // how trials are drawn
  int trials = 16;                              // random: count; grid: cap (0 = all)
  uint64_t seed = 1;                            // random draws
  double budget_minutes = 0;                    // whole-sweep wall clock; 0 = unlimited
  HalvingSchedule halving;                      // rungs and promotion rate
  std::vector<SweepParam> params;               // in file order

  // Throws std::invalid_argument naming the bad key or value (unknown keys, a range in a grid,
  // min > max, log with min <= 0, a value the trainer would refuse).
  void validate() const;
};

// One trial: the overrides it applies (key -> value text), in key order.
struct TrialConfig {
  int id = 0;
  std::map<std::string, std::string> overrides;
};

// Parses sweep.yaml; errors name the path and the key. Validates.
SweepSpace load_sweep_space(const std::string& path);
SweepSpace parse_sweep_space(const std::string& yaml_text, const std::string& name = "sweep");

// The trials of a sweep: random draws (seeded, reproducible) or the grid in row-major order
// (first param varies slowest). Deterministic for a given space.
std::vector<TrialConfig> generate_trials(const SweepSpace& space);

// Applies a trial's overrides: training keys to `train`, "model.*" keys to `model`; sets
// train.max_steps to the schedule's max_steps. Throws std::invalid_argument on a bad value.
void apply_trial(const TrialConfig& trial, const HalvingSchedule& schedule, TrainingConfig& train,
                 ModelConfig& model);

}  // namespace ktl
