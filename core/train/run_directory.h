// The output directory of a training run and the resumable state inside its checkpoints, shared
// by every training loop here (Trainer for train/sft, DpoTrainer for dpo):
//
//   checkpoint-<step>/   model (core/model/checkpoint.h) + optimizer.safetensors,
//                        trainer_state.json, training_config.yaml
//   latest, best, final  relative links to a checkpoint-<step>, each replaced atomically
//
// Rotation keeps the newest K checkpoint-<step> directories (and one protected step, e.g. the
// best); a save killed half way leaves "<name>.tmp-<pid>" / "<name>.old-<pid>", removed by the
// next run. optimizer.safetensors holds the AdamW moments, the CPU generator's state ("rng/cpu")
// and any extra fp32 tensors of the loop (DPO: the reference log-probabilities); its sha256 is
// recorded in trainer_state.json and checked on restore.
// Thread-safety: free functions; one training loop owns a directory at a time.
#pragma once

#include <torch/types.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ktl {

class AdamW;
class MetricsSink;

inline constexpr const char* kOptimizerFile = "optimizer.safetensors";
inline constexpr const char* kTrainerStateFile = "trainer_state.json";
inline constexpr const char* kTrainingConfigFile = "training_config.yaml";

// checkpoint-<step> directories (not links) of `dir`, sorted by step.
std::vector<std::pair<int64_t, std::string>> list_step_checkpoints(const std::string& dir);

// Points `output_dir`/`name` at `target_dir` (relative link, atomic rename over the old link).
void point_run_link(const std::string& output_dir, const std::string& name,
                    const std::string& target_dir);

// Deletes the oldest checkpoint-<step> directories beyond `keep_last`, never `protected_step`
// (-1: none); each deletion is reported to the sink, a failure logged through it.
void rotate_step_checkpoints(const std::string& output_dir, int keep_last, int64_t protected_step,
                             MetricsSink& sink);

// Removes what a process killed while saving left in `output_dir` (other pids than this one).
void remove_stale_save_temps(const std::string& output_dir);

// Writes `path`: every AdamW state tensor, the CPU generator's state as "rng/cpu" (uint8) and
// `extra` (stored as fp32 under their names, which must not clash). Returns the file's sha256.
std::string write_optimizer_file(const std::string& path, const AdamW& optimizer,
                                 const std::map<std::string, torch::Tensor>& extra = {});

// Checks the file against `sha256`, restores the AdamW moments (with `adamw_steps`) and the CPU
// generator; returns every other tensor of the file (the `extra` of write_optimizer_file).
// Throws std::runtime_error naming the file on a mismatch, a bad dtype or a missing entry.
std::map<std::string, torch::Tensor> read_optimizer_file(const std::string& path,
                                                         const std::string& sha256,
                                                         int64_t adamw_steps, AdamW& optimizer);

// trainer_state.json of a checkpoint, parsed. Throws std::runtime_error naming the file when it
// or optimizer.safetensors is missing ("not a training checkpoint") or the JSON is invalid.
nlohmann::json read_trainer_state(const std::string& checkpoint_dir);

}  // namespace ktl
