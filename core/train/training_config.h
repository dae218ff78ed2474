// Training hyper-parameters (configs/training.yaml). Every key can be overridden on the
// command line (`--max-steps 200` sets max_steps) and the resolved values are saved with each
// checkpoint as training_config.yaml. No LibTorch here: the jobs daemon validates configs too.
// Plain data; copy freely.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/adapters/lora_config.h"

namespace ktl {

struct TrainingConfig {
  int batch_size = 8;                   // sequences per micro-batch
  int gradient_accumulation_steps = 1;  // micro-batches per optimizer step
  int max_seq_length = 256;             // tokens per sequence (<= the model's max_seq_length)
  double learning_rate = 6e-4;          // peak learning rate (after warmup)
  double min_learning_rate = 6e-5;      // cosine floor reached at max_steps
  int warmup_steps = 100;               // linear warmup from 0 to learning_rate
  int64_t max_steps = 2000;             // optimizer steps in total
  // Time budget: stop after this many minutes of training steps (eval, checkpoints and samples
  // not counted; resumes continue the count); 0 = off. With it the cosine decay follows the
  // share of the budget used, not the step, so a run ends on the floor whatever its speed.
  // max_steps still caps the run.
  double max_minutes = 0;
  double weight_decay = 0.1;            // AdamW decay on matrices (never on norms/biases/1-D)
  double adam_beta1 = 0.9;              // AdamW first-moment decay
  double adam_beta2 = 0.95;             // AdamW second-moment decay
  double adam_eps = 1e-8;               // AdamW denominator epsilon
  double grad_clip = 1.0;               // global gradient-norm clip; 0 = off
  int save_steps = 500;                 // checkpoint every N steps; 0 = only at the end
  int eval_steps = 250;                 // validation every N steps; 0 = only at the end
  int eval_batches = 20;                // batches of the fixed validation subset
  int log_steps = 10;                   // one progress line every N steps
  int sample_steps = 500;               // generate samples every N steps; 0 = off
  int keep_last_checkpoints = 3;        // older checkpoint-N dirs are deleted (best is kept)
  int early_stopping_patience = 0;      // stop after N evals without val improvement; 0 = off
  bool fp16 = false;                    // fp16 autocast + loss scaling (CUDA/MPS only)
  std::string bf16 = "auto";            // "auto" (measure at start), "true" or "false"
  bool gradient_checkpointing = false;  // recompute each block in backward: less memory
  int64_t seed = 1234;                  // model init, data order and sampling
  std::string device = "auto";          // auto|cpu|cuda|mps
  int num_threads = 0;                  // threads (LibTorch and OpenBLAS); 0 = every core
  int overfit_batches = 0;              // >0: train on these N fixed batches only (sanity check)
  // Task accuracy by likelihood at every evaluation (core/task_eval/mc_task.h): a comma list of
  // nsmc-sentiment, kornli and mc:FILE.jsonl; "" = off.
  std::string task_eval;
  std::string task_data_dir;     // where nsmc-sentiment-dev.jsonl etc. are; "" = the default
  int task_eval_examples = 200;  // the first N examples of each task; 0 = all
  int task_eval_shots = 0;       // solved examples before each one
  // LoRA (docs/training-guide.md, "LoRA"): with lora_rank > 0 the base (--init-from) is frozen
  // and only a rank-r adapter on lora_targets trains; checkpoints hold the adapter alone (PEFT
  // files) and name the base in lora_base.json.
  int lora_rank = 0;              // r; 0 = off (full training)
  double lora_alpha = 32;         // adapter scale = lora_alpha / lora_rank
  double lora_dropout = 0.05;     // dropout on the adapter's input while training
  std::string lora_targets = "q,k,v,o,gate,up,down";  // projections: q,k,v,o,gate,up,down or all
  // Distillation (`ktl distill`; docs/training-guide.md, "Distilling a draft model"): with a
  // teacher the loss is alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy,
  // T the temperature, the teacher run on the same batches without gradients.
  std::string distill_teacher;       // teacher checkpoint directory; "" = no distillation
  double distill_alpha = 0.5;        // weight of the KL term (0 = next-token loss only)
  double distill_temperature = 1.0;  // softening T of both distributions in the KL
  // The KL over the teacher's k most likely tokens (both sides renormalised over them) instead
  // of the whole vocabulary; 0 = whole vocabulary. 64 measured faster: model_draft distilled
  // from model_small (8k vocab), 8 x 256, bf16, one thread of an AMD EPYC Zen 4 (load ~2):
  // 614 tok/s (3.34 s/step) vs 549 tok/s (3.73 s/step) with the whole vocabulary.
  int distill_top_k = 64;

  // Throws std::invalid_argument naming the bad key.
  void validate() const;
  // Resolved values as YAML text (all keys, file order).
  std::string to_yaml() const;
};

// The defaults of `ktl sft`: a short, gentle run over a pretrained model (learning rate 1e-4
// to 1e-5, warmup 20, 300 steps, no weight decay, eval every 50, samples/saves every 100).
TrainingConfig sft_training_defaults();
// `ktl sft --lora-rank r`: the same with the learning rate an adapter needs, 3e-3 to 3e-4
// (measured against 1e-3 on model_small), and gradient checkpointing on: activations are most of
// a LoRA run's memory (model_small 8 x 256: 3.3 GB without, 1.05 GB with; docs/training-guide.md).
TrainingConfig lora_sft_training_defaults();

// The defaults of `ktl dpo`: learning rate 5e-6 to 5e-7, warmup 10, 200 steps of 8 pairs, no
// weight decay, eval every 50, a checkpoint every 100, no samples.
TrainingConfig dpo_training_defaults();

// The adapter lora_* asks for (rank 0 = none). Throws std::invalid_argument on bad targets.
LoraConfig lora_config_of(const TrainingConfig& c);

// task_eval as (task name, file): "mc:x.jsonl" -> ("mc", "x.jsonl"); built-in tasks get their
// file in task_data_dir, or the default (core/task_eval/mc_task.h) when that is empty. The
// file is "" for a built-in task without task_data_dir. Throws std::invalid_argument naming a
// bad entry.
std::vector<std::pair<std::string, std::string>> parse_task_eval(const TrainingConfig& c);

// Every key, in file order (for --help and CLI validation).
const std::vector<std::string>& training_config_keys();

// Sets one key from text; throws std::invalid_argument "unknown training key 'x'" or
// "key 'x': expected an integer, got 'abc'".
void set_training_key(TrainingConfig& c, const std::string& key, const std::string& value);

// Loads a YAML file over the defaults; unknown keys and wrong types name the key. Validates.
TrainingConfig load_training_config(const std::string& path);
// Loads over `base` (e.g. a checkpoint's config with overrides to come). Does not validate.
void load_training_config_into(const std::string& path, TrainingConfig& base);

// "max-steps" or "max_steps" -> "max_steps"; returns "" when not a training key.
std::string training_key_from_flag(const std::string& flag);

}  // namespace ktl
