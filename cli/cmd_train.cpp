// ktl train: trains a model from a config (or resumes a run); see docs/training-guide.md.
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/default_training_config.h"
#include "cli/stop_on_signal.h"
#include "core/base/file_util.h"
#include "core/data/token_shard.h"
#include "core/model/checkpoint.h"
#include "core/model/device.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/trainer.h"
#include "core/train/training_config.h"
#include "jobs/child_reporting.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

const std::vector<std::string> kOwnFlags = {"config",      "model-config", "data",   "output-dir",
                                            "resume-from", "init-from",    "job-db", "job-id"};

// Config file (or the checkpoint's when resuming), then every --<key> override in order.
ktl::TrainingConfig resolve_config(const Args& args) {
  struct Override {
    std::string flag, key, value;
  };
  std::vector<Override> overrides;  // checked before any file is read
  for (const auto& [name, value] : args.items()) {
    if (std::find(kOwnFlags.begin(), kOwnFlags.end(), name) != kOwnFlags.end()) continue;
    const std::string key = ktl::training_key_from_flag(name);
    if (key.empty()) throw UsageError("unknown flag --" + name + " (see 'ktl train --help')");
    overrides.push_back({name, key, value});
  }
  ktl::TrainingConfig c;
  std::string path = args.get("config");
  if (path.empty() && args.has("resume-from")) {
    path = (fs::path(args.get("resume-from")) / "training_config.yaml").string();
    if (!fs::exists(path)) path.clear();
  }
  if (path.empty()) path = ktl::cli::default_training_config_path();
  if (!path.empty()) ktl::load_training_config_into(path, c);
  for (const auto& o : overrides) {
    try {
      ktl::set_training_key(c, o.key, o.value);
    } catch (const std::invalid_argument& e) {
      throw UsageError("--" + o.flag + " (" + o.key + "): " + e.what());
    }
  }
  c.validate();
  return c;
}

struct ModelAndTokenizer {
  ktl::Transformer model{nullptr};
  std::shared_ptr<ktl::Tokenizer> tokenizer;
};

ModelAndTokenizer build_model(const Args& args, const ktl::TrainingConfig& c,
                              const torch::Device& device) {
  ModelAndTokenizer m;
  const std::string from =
      args.has("resume-from") ? args.get("resume-from") : args.get("init-from");
  if (!from.empty()) {
    auto ck = ktl::load_checkpoint(from, device);
    m.model = ck.model;
    m.tokenizer = ck.tokenizer;
    return m;
  }
  if (!args.has("model-config"))
    throw UsageError("missing --model-config (or --resume-from / --init-from)");
  auto config = ktl::load_model_config_yaml(args.get("model-config"));
  const fs::path tok_path = fs::path(args.get("data")) / "tokenizer.model";
  if (!fs::exists(tok_path))
    throw std::runtime_error(tok_path.string() + " not found (run `ktl prepare-data` first)");
  m.tokenizer = ktl::Tokenizer::load(tok_path.string());
  if (m.tokenizer->vocab_size() != config.vocab_size) {
    std::cout << "note: using the tokenizer's vocab size " << m.tokenizer->vocab_size()
              << " instead of " << config.vocab_size << " from the model config\n";
    config.vocab_size = m.tokenizer->vocab_size();
  }
  m.model = ktl::Transformer(config);
  m.model->init_weights(static_cast<uint64_t>(c.seed));
  m.model->to(device);
  return m;
}

int run_train(const Args& args) {
  if (args.has("resume-from") && args.has("init-from"))
    throw UsageError("--resume-from and --init-from are exclusive");
  const ktl::TrainingConfig c = resolve_config(args);
  std::string output_dir = args.get("output-dir");
  if (output_dir.empty() && args.has("resume-from"))
    output_dir = fs::absolute(args.get("resume-from")).parent_path().string();
  if (output_dir.empty()) throw UsageError("missing required flag --output-dir");
  if (c.num_threads > 0) torch::set_num_threads(c.num_threads);
  const torch::Device device = ktl::resolve_device(c.device);

  ktl::jobs::ChildSinks sinks(args.get("job-db"), args.get_int("job-id", 0));
  ktl::MetricsSink* sink = &sinks.sink();

  auto m = build_model(args, c, device);
  m.model->train();
  std::cout << "resolved training config:\n" << c.to_yaml();
  std::cout << "model: " << m.model->config().num_parameters() << " parameters, "
            << m.model->config().num_layers << " layers, hidden " << m.model->config().hidden_size
            << ", vocab " << m.model->config().vocab_size << "; device " << device.str()
            << ", threads " << torch::get_num_threads() << "\n";
  std::cout << "effective batch: " << c.batch_size << " x " << c.gradient_accumulation_steps
            << " x " << c.max_seq_length << " = "
            << int64_t(c.batch_size) * c.gradient_accumulation_steps * c.max_seq_length
            << " tokens/step\n"
            << std::flush;

  // Token ids beyond the model's vocabulary would fail deep inside the embedding.
  const fs::path train_bin = fs::path(args.get("data")) / "train.bin";
  if (fs::exists(train_bin)) {
    const auto h = ktl::TokenShard::read_header(train_bin);
    if (int64_t(h.vocab_size) > m.model->config().vocab_size)
      throw std::runtime_error(
          train_bin.string() + " was tokenized with a " + std::to_string(h.vocab_size) +
          "-piece vocabulary but the model has " + std::to_string(m.model->config().vocab_size) +
          " (use the checkpoint's tokenizer when preparing data)");
  }
  ktl::Trainer trainer(c, m.model, m.tokenizer, ktl::open_training_data(args.get("data")),
                       output_dir, *sink, device);
  if (args.has("resume-from")) trainer.restore(args.get("resume-from"));
  ktl::TrainResult r;
  {
    ktl::cli::StopOnSignal<ktl::Trainer> stop(&trainer);
    r = trainer.run();
  }
  sink->flush();
  if (r.status == ktl::TrainStatus::kDiverged) throw std::runtime_error(r.message);
  std::cout << "training " << ktl::train_status_name(r.status) << " at step " << r.step;
  if (r.last_eval) std::cout << "; val loss " << r.last_eval->loss << ", bpc " << r.last_eval->bpc;
  std::cout << "; checkpoint " << r.last_checkpoint << " (also " << output_dir << "/latest)\n";
  return 0;
}

std::vector<ktl::cli::Flag> train_flags() {
  std::vector<ktl::cli::Flag> f = {
      {"config", "training YAML (default configs/training.yaml; when resuming, the checkpoint's)"},
      {"model-config", "model YAML (not needed with --resume-from/--init-from)"},
      {"data", "data directory with train.bin, val.bin, tokenizer.model", "", false, true},
      {"output-dir", "where checkpoint-<step>/, latest, best and final go (resume: the parent)"},
      {"resume-from", "checkpoint directory to continue from (optimizer, LR and data position)"},
      {"init-from", "checkpoint directory whose weights start a new run at step 0"},
      {"job-db", "job database (set by the training daemon)"},
      {"job-id", "job id in --job-db"},
  };
  const ktl::TrainingConfig defaults;
  for (const auto& key : ktl::training_config_keys()) {
    std::string flag = key;
    for (char& ch : flag)
      if (ch == '_') ch = '-';
    const bool is_bool = key == "fp16" || key == "gradient_checkpointing";
    f.push_back(
        {flag, "overrides training key '" + key + "'" + (is_bool ? " (--" + flag + "=false)" : ""),
         "", is_bool});
  }
  return f;
}

KTL_COMMAND(ktl::cli::Command{
    "train",
    "Train (or resume training) a model; every training.yaml key is also a flag (--max-steps 200).",
    train_flags(), run_train, /*accepts_unknown_flags=*/true});

}  // namespace
