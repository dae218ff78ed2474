// Job specs: the JSON a client submits, validated into something safe to run, and the child
// command lines built from it. Thread-safe (pure functions; they only read the filesystem).
//
// Spec: {"kind": "...", "name": "optional", "options": {...}}. Options per kind (paths may be
// absolute or relative to the data dir; all must resolve inside the allowed roots):
//   train            config (file, required)        -> --config
//                    model_config (file, required)  -> --model-config
//                    data (dir, required)           -> --data
//                    output_dir (dir, optional; default DATA_DIR/jobs/<id>/checkpoints)
//                    resume_from (dir, optional)    -> --resume-from
//                    init_from (dir, optional)      -> --init-from (weights only, step 0)
//                    nproc (integer 1..64, optional) -> --nproc-per-node (data-parallel ranks
//                    on this machine; batch_size must be a multiple of it)
//   eval             model (dir, required) -> --model, data (dir, required) -> --data,
//                    split (string, optional) -> --split
//   prepare-data     input (path or array of paths; required unless default_corpus is true)
//                    -> --input (repeated), output (dir, optional; default
//                    DATA_DIR/jobs/<id>/data) -> --output, tokenizer (file or dir, optional)
//   train-tokenizer  input (path or array, required) -> --input, output (dir, optional;
//                    default DATA_DIR/jobs/<id>/tokenizer) -> --output
//   sweep            space (file, required) -> --space, config (file, optional) -> --config,
//                    model_config (file, required), data (dir, required), output_dir (dir,
//                    optional; default DATA_DIR/jobs/<id>/sweep). No overrides. The space is
//                    parsed with the sweep's rules (core/train/sweep_space.h).
//   sft              data (file: chat .jsonl or Q/A .tsv, required) -> --data,
//                    init_from (dir) -> --init-from or resume_from (dir) -> --resume-from,
//                    config (file, optional), output_dir (dir, optional); overrides are
//                    training keys plus no_pack, val_fraction, samples
//   dpo              data (file: preference .jsonl, required) -> --data, init_from (dir,
//                    required) -> --init-from, resume_from (dir) -> --resume-from, config (file,
//                    optional), output_dir (dir, optional); overrides are training keys (over
//                    dpo_training_defaults) plus loss ("dpo" | "orpo"), beta, orpo_lambda,
//                    val_fraction, rejected_from_model (bool), rejected_max_tokens,
//                    rejected_temperature, rejected_top_p, each checked here
//   distill          teacher (dir, required) -> --teacher, data (dir, required) -> --data,
//                    model_config (file, optional; default configs/model_draft.yaml) ->
//                    --model-config, config (file, optional) -> --config, output_dir (dir,
//                    optional), resume_from / init_from (dir, optional); overrides are training
//                    keys (max_minutes, ...) plus alpha ([0, 1]), temperature ((0, 100]) and
//                    top_k (integer >= 0), each checked here
//   pipeline         {"prepare_data": {prepare-data options}, "train": {train options}}:
//                    runs prepare-data, then train; train.data defaults to prepare's output.
// Any other option key (lowercase [a-z0-9_]) is an override passed as --key-with-dashes=VALUE:
// numbers, booleans, or short plain strings (no '/', no '..': paths go through typed options).
// A train stage's overrides must be training.yaml keys; each is parsed and the config file
// plus all overrides validated with the trainer's own rules (core/train/training_config.h),
// so a spec the trainer would refuse is refused here (integers must be JSON integers in range).
// train and eval children also get --job-db DB --job-id N so they report into the store.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/job.h"

namespace ktl::jobs {

// A spec that cannot run; what() names the field and the reason, field() the field alone
// ("options.max_steps"; "" when the spec as a whole is wrong).
struct JobSpecError : std::runtime_error {
  explicit JobSpecError(const std::string& message) : std::runtime_error(message) {}
  JobSpecError(const std::string& field, const std::string& why)
      : std::runtime_error(field.empty() ? why : field + ": " + why), field_(field) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

struct JobSpecContext {
  std::string data_dir;                    // --data-dir: root for relative paths and outputs
  std::vector<std::string> allowed_roots;  // --allow-path roots, besides data_dir
};

struct ValidatedSpec {
  JobKind kind = JobKind::kTrain;
  std::string name;
  nlohmann::json options;                             // paths made absolute and canonical
  std::string to_json() const;                        // {"kind","name","options"}
  std::map<std::string, std::string> params() const;  // flat "key" / "stage.key" -> value
};

// Validates a parsed spec against the filesystem and the roots. Creates nothing.
ValidatedSpec validate_job_spec(const nlohmann::json& spec, const JobSpecContext& ctx);
// Same for a request body; malformed JSON is a JobSpecError too.
ValidatedSpec validate_job_spec_text(const std::string& body, const JobSpecContext& ctx);

// Where a job writes when its spec does not say (job.output_dir is set to this at creation).
std::string default_output_dir(const JobSpecContext& ctx, JobKind kind, int64_t job_id);

// The job's output dir: the spec's output option, else default_output_dir().
std::string job_output_dir(const ValidatedSpec& v, const JobSpecContext& ctx, int64_t job_id);

// One child process of a job: `executable args...`.
struct JobStage {
  std::string name;               // "train", "prepare-data", ...
  std::vector<std::string> args;  // after the executable: {"train", "--config", ...}
  std::string output_dir;         // created by the runner before it starts ("" = none)
};

// The command lines for `job` (from its stored spec). job.resume_from, when set, is passed as
// --resume-from to the train stage, and a pipeline then skips prepare-data. The stored spec
// is validated again (paths may have changed since submission); throws JobSpecError.
std::vector<JobStage> build_job_stages(const Job& job, const JobSpecContext& ctx,
                                       const std::string& db_path);

// True when `path` (canonical) lies inside one of the roots of `ctx` (canonicalised).
bool path_is_allowed(const std::string& path, const JobSpecContext& ctx);

}  // namespace ktl::jobs
