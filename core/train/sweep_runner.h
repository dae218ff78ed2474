// Runs a hyperparameter sweep (core/train/sweep_space.h) in this process: short trainings over
// the trials, pruned by successive halving (core/train/successive_halving.h), within a
// wall-clock budget. Each trial trains in OUTPUT/trial-<id>/ and reports its curve through the
// sink with keys prefixed "trial/<id>/" (train/loss, val/loss, ...); a trial continues from
// its previous rung's checkpoint, so the LR schedule (over halving.max_steps) is one run.
// Every trial evaluates every halving.min_steps steps on the same validation windows (the
// base config's eval_batches x batch_size), so val losses compare across batch sizes.
//
// OUTPUT/sweep_state.json is rewritten (atomically) after every rung a trial finishes: the
// trials, the halving state, the elapsed time and the measured precision. run() on the same
// output dir resumes from it: finished rungs are never trained again; a rung cut short is
// redone from the previous rung's checkpoint. At the end: OUTPUT/ranking.md and
// OUTPUT/recipe.yaml (the best trial's training config).
//
// Lifecycle: construct -> run() once -> SweepResult. request_stop() (any thread, a signal
// handler) stops the running trial at its next step; run() then returns with complete=false.
// Thread-safety: run() from one thread; request_stop() from any.
#pragma once

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/model/model_config.h"
#include "core/train/metrics_sink.h"
#include "core/train/successive_halving.h"
#include "core/train/sweep_space.h"
#include "core/train/training_config.h"

namespace ktl {

class Trainer;

struct SweepRunOptions {
  TrainingConfig base;                 // every trial starts from it (training.yaml + overrides)
  ModelConfig model;                   // base shape; "model.*" keys override it per trial
  std::string data_dir;                // train.bin, val.bin (required) and tokenizer.model
  std::string output_dir;              // state, trials, ranking and recipe
  torch::Device device = torch::kCPU;  // where trials train
};

struct SweepTrialRow {
  int id = 0;
  TrialState state = TrialState::kPending;
  std::map<std::string, std::string> overrides;
  int64_t steps = 0;    // steps trained (the deepest rung reached)
  double val_loss = 0;  // at that rung (NaN: failed)
  double val_bpc = 0;   // bits per character there (0 when unknown)
  double seconds = 0;   // wall time spent on this trial
  std::string note;
};

struct SweepResult {
  bool complete = false;            // false: stopped on request (resume with the same output)
  std::vector<SweepTrialRow> rows;  // ranked, best first
  std::string ranking_markdown;
  std::string recipe_yaml;  // the best trial's training config ("" if no trial finished a rung)
};

class SweepRunner {
 public:
  SweepRunner(SweepSpace space, SweepRunOptions opts, MetricsSink& sink);
  ~SweepRunner();
  SweepResult run();
  void request_stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The ranking as a Markdown table (rank, trial, val loss, bpc, steps, state, minutes, config).
std::string sweep_ranking_markdown(const std::vector<SweepTrialRow>& rows);

// The best trial's training config as training.yaml text, with a header naming the sweep
// result (model keys, if any, are listed in the header and written by write_recipe).
std::string sweep_recipe_yaml(const TrainingConfig& base, const SweepTrialRow& best,
                              int64_t sweep_steps);
// Writes the recipe to `path` (and `<stem>.model.yaml` beside it when the trial changed the
// model shape, starting from `model`). Creates parent directories.
void write_recipe(const std::string& path, const TrainingConfig& base, const ModelConfig& model,
                  const SweepTrialRow& best, int64_t sweep_steps);

}  // namespace ktl
