// ktl train: trains a model from a config (or resumes a run); see docs/training-guide.md.
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "cli/command.h"
#include "cli/default_training_config.h"
#include "cli/stop_on_signal.h"
#include "core/base/file_util.h"
#include "core/data/token_shard.h"
#include "core/distributed/dist_config.h"
#include "core/distributed/local_launcher.h"
#include "core/distributed/process_group.h"
#include "core/model/checkpoint.h"
#include "core/model/device.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/model/thread_policy.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/lora_training.h"
#include "core/train/trainer.h"
#include "core/train/training_config.h"
#include "jobs/child_reporting.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

const std::vector<std::string> kOwnFlags = {
    "config",      "model-config", "data",           "output-dir", "resume-from", "init-from",
    "job-db",      "job-id",       "nproc-per-node", "nnodes",     "node-rank",   "master-addr",
    "master-port", "dist-backend", "dist-timeout",   "bucket-mb",  "no-overlap"};
// Flags that only the launcher reads; ranks get their place from the environment.
const std::vector<std::string> kLauncherFlags = {"nproc-per-node", "nnodes", "node-rank",
                                                 "master-addr", "master-port"};

bool launcher_flag_given(const Args& args) {
  for (const auto& f : kLauncherFlags)
    if (args.has(f)) return true;
  return false;
}

// Settings every rank reads from its environment (set before the launcher forks).
void export_dist_settings(const Args& args) {
  if (args.has("dist-backend")) setenv("KTL_DIST_BACKEND", args.get("dist-backend").c_str(), 1);
  if (args.has("dist-timeout")) setenv("KTL_DIST_TIMEOUT", args.get("dist-timeout").c_str(), 1);
  if (args.has("bucket-mb")) setenv("KTL_DIST_BUCKET_MB", args.get("bucket-mb").c_str(), 1);
  if (args.has("no-overlap") && args.get_bool("no-overlap")) setenv("KTL_DIST_OVERLAP", "0", 1);
}

// `ktl train --nproc-per-node N ...`: re-runs this command line as N ranks (torchrun's job).
int launch_ranks(const Args& args) {
  ktl::LaunchConfig lc;
  lc.nproc_per_node = int(args.get_int("nproc-per-node", 1));
  lc.nnodes = int(args.get_int("nnodes", 1));
  lc.node_rank = int(args.get_int("node-rank", 0));
  lc.master_addr = args.get("master-addr", "127.0.0.1");
  lc.master_port = int(args.get_int("master-port", 0));
  try {
    lc.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  std::vector<std::string> argv = {ktl::executable_path(), "train"};
  for (const auto& [name, value] : args.items()) {
    if (std::find(kLauncherFlags.begin(), kLauncherFlags.end(), name) != kLauncherFlags.end())
      continue;
    argv.push_back("--" + name + "=" + value);
  }
  export_dist_settings(args);
  std::cout << "launching " << lc.nproc_per_node << " local ranks (world size "
            << lc.nnodes * lc.nproc_per_node << ", node " << lc.node_rank << ")\n"
            << std::flush;
  std::string error;
  const int rc = ktl::launch_local_ranks(lc, argv, &error);
  if (rc != 0) throw std::runtime_error("data-parallel training failed: " + error);
  return 0;
}

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
  std::optional<ktl::LoraBaseRef> lora_base;  // a LoRA run's base
};

ModelAndTokenizer build_model(const Args& args, const ktl::TrainingConfig& c,
                              const torch::Device& device) {
  ModelAndTokenizer m;
  const std::string from =
      args.has("resume-from") ? args.get("resume-from") : args.get("init-from");
  if (!from.empty() || c.lora_rank > 0) {
    ktl::TrainingStart s;
    try {
      s = ktl::load_training_start(args.get("init-from"), args.get("resume-from"), c, device);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
    ktl::attach_training_lora(*s.ck.model, c);
    m.model = s.ck.model;
    m.tokenizer = s.ck.tokenizer;
    m.lora_base = s.lora_base;
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

// Ranks other than 0 print only warnings and errors (rank 0 reports for the job).
class QuietSink : public ktl::MetricsSink {
 public:
  explicit QuietSink(int rank) : rank_(rank) {}
  void log(const std::string& line) override {
    if (line.find("error") != std::string::npos || line.find("warning") != std::string::npos)
      std::cerr << "[rank " << rank_ << "] " << line << "\n";
  }
  void metric(const std::string&, int64_t, double) override {}
  void sample(int64_t, const std::string&, const std::string&, const std::string&) override {}
  void checkpoint(int64_t, const std::string&, const std::map<std::string, double>&) override {}

 private:
  int rank_;
};

void print_run_header(const ktl::TrainingConfig& c, const ModelAndTokenizer& m,
                      const torch::Device& device, const ktl::DistConfig& dc);
void check_data_vocab(const Args& args, const ModelAndTokenizer& m);

int run_train(const Args& args) {
  if (args.has("resume-from") && args.has("init-from"))
    throw UsageError("--resume-from and --init-from are exclusive");
  const ktl::TrainingConfig c = resolve_config(args);
  const bool in_rank = std::getenv("RANK") != nullptr && std::getenv("WORLD_SIZE") != nullptr;
  if (!in_rank && launcher_flag_given(args)) return launch_ranks(args);
  export_dist_settings(args);
  ktl::DistConfig dc;
  try {
    dc = ktl::dist_config_from_environ();
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("distributed environment: ") + e.what());
  }
  if (dc.enabled() && c.batch_size % dc.world_size != 0)
    throw UsageError("batch_size " + std::to_string(c.batch_size) + " must be a multiple of the " +
                     std::to_string(dc.world_size) + " data-parallel ranks");
  std::string output_dir = args.get("output-dir");
  if (output_dir.empty() && args.has("resume-from"))
    output_dir = fs::absolute(args.get("resume-from")).parent_path().string();
  if (output_dir.empty()) throw UsageError("missing required flag --output-dir");
  // 0 = every core; ranks on one machine share them instead of each taking all of them.
  ktl::apply_thread_policy(c.num_threads, dc.local_world_size);
  torch::Device device = ktl::resolve_device(c.device);
  // One GPU per local rank.
  if (dc.enabled() && device.is_cuda()) device = torch::Device(torch::kCUDA, dc.local_rank);
  std::shared_ptr<ktl::ProcessGroup> pg;
  if (dc.enabled()) {
    std::string why;
    if (!ktl::ProcessGroup::available(device, &why)) throw std::runtime_error(why);
    pg = ktl::ProcessGroup::connect(dc, device);
  }
  const bool main_rank = dc.is_main();

  // Rank 0 reports for the job; other ranks print only warnings and errors.
  ktl::jobs::ChildSinks sinks(main_rank ? args.get("job-db") : "", args.get_int("job-id", 0));
  QuietSink quiet(dc.rank);
  ktl::MetricsSink* sink = main_rank ? &sinks.sink() : static_cast<ktl::MetricsSink*>(&quiet);

  auto m = build_model(args, c, device);
  m.model->train();
  if (main_rank) print_run_header(c, m, device, dc);

  // Token ids beyond the model's vocabulary would fail deep inside the embedding.
  check_data_vocab(args, m);
  ktl::Trainer trainer(c, m.model, m.tokenizer, ktl::open_training_data(args.get("data")),
                       output_dir, *sink, device);
  if (m.lora_base) {
    trainer.set_lora_base(*m.lora_base);
    if (main_rank) std::cout << ktl::describe_lora(*m.model, c, *m.lora_base) << "\n";
  }
  if (pg) trainer.set_process_group(pg);
  if (args.has("resume-from")) trainer.restore(args.get("resume-from"));
  ktl::TrainResult r;
  {
    ktl::cli::StopOnSignal<ktl::Trainer> stop(&trainer);
    r = trainer.run();
  }
  sink->flush();
  if (r.status == ktl::TrainStatus::kDiverged) throw std::runtime_error(r.message);
  if (!main_rank) return 0;
  std::cout << "training " << ktl::train_status_name(r.status) << " at step " << r.step;
  if (r.last_eval) std::cout << "; val loss " << r.last_eval->loss << ", bpc " << r.last_eval->bpc;
  std::cout << "; checkpoint " << r.last_checkpoint << " (also " << output_dir << "/latest)\n";
  return 0;
}

void print_run_header(const ktl::TrainingConfig& c, const ModelAndTokenizer& m,
                      const torch::Device& device, const ktl::DistConfig& dc) {
  std::cout << "resolved training config:\n" << c.to_yaml();
  std::cout << "model: " << m.model->config().num_parameters() << " parameters, "
            << m.model->config().num_layers << " layers, hidden " << m.model->config().hidden_size
            << ", vocab " << m.model->config().vocab_size << "; device " << device.str() << "\n"
            << ktl::describe(ktl::current_thread_pools()) << "\n";
  std::cout << "effective batch: " << c.batch_size << " x " << c.gradient_accumulation_steps
            << " x " << c.max_seq_length << " = "
            << int64_t(c.batch_size) * c.gradient_accumulation_steps * c.max_seq_length
            << " tokens/step";
  if (dc.enabled())
    std::cout << " over " << dc.world_size << " ranks (" << c.batch_size / dc.world_size
              << " rows each per micro-batch)";
  std::cout << "\n" << std::flush;
}

void check_data_vocab(const Args& args, const ModelAndTokenizer& m) {
  const fs::path train_bin = fs::path(args.get("data")) / "train.bin";
  if (!fs::exists(train_bin)) return;
  const auto h = ktl::TokenShard::read_header(train_bin);
  if (int64_t(h.vocab_size) > m.model->config().vocab_size)
    throw std::runtime_error(train_bin.string() + " was tokenized with a " +
                             std::to_string(h.vocab_size) + "-piece vocabulary but the model has " +
                             std::to_string(m.model->config().vocab_size) +
                             " (use the checkpoint's tokenizer when preparing data)");
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
      {"nproc-per-node",
       "data parallel: start N local ranks (as torchrun; see docs/deployment.md)"},
      {"nnodes", "data parallel: machines in the job", "1"},
      {"node-rank", "data parallel: this machine's index", "0"},
      {"master-addr", "data parallel: host of rank 0 (MASTER_ADDR)", "127.0.0.1"},
      {"master-port", "data parallel: port of rank 0's TCPStore (MASTER_PORT; 0 = a free one)",
       "0"},
      {"dist-backend", "data parallel: auto|gloo|nccl", "auto"},
      {"dist-timeout", "data parallel: seconds before a silent peer is an error", "300"},
      {"bucket-mb", "data parallel: gradient all-reduce bucket size", "25"},
      {"no-overlap", "data parallel: all-reduce after backward instead of during it", "", true},
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
