// ktl distill: trains a small draft model (configs/model_draft.yaml) on a teacher's output
// distribution, for speculative decoding; see docs/training-guide.md, "Distilling a draft model".
// The draft takes the teacher's vocabulary, context length and tokenizer, so its checkpoints are
// ordinary ktl checkpoints (generate, eval, export) that propose the teacher's own tokens.
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/default_training_config.h"
#include "cli/stop_on_signal.h"
#include "cli/training_overrides.h"
#include "core/base/file_util.h"
#include "core/data/token_shard.h"
#include "core/model/checkpoint.h"
#include "core/model/device.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/model/thread_policy.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/distill_teacher.h"
#include "core/train/lora_training.h"
#include "core/train/trainer.h"
#include "core/train/training_config.h"
#include "jobs/child_reporting.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

constexpr const char* kDraftConfig = "configs/model_draft.yaml";

const std::vector<std::string> kOwnFlags = {
    "teacher",   "data",        "out",   "output-dir", "model-config", "config", "resume-from",
    "init-from", "temperature", "top-k", "alpha",      "job-db",       "job-id"};

// Defaults, then --config (or the resumed checkpoint's), then --<training key> flags, then
// --teacher, --alpha, --temperature and --top-k.
ktl::TrainingConfig resolve_config(const Args& args) {
  ktl::TrainingConfig c;
  try {
    c = ktl::cli::resolve_training_overrides(args, ktl::TrainingConfig{}, kOwnFlags, "distill");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    if (what.find("unknown key 'hidden_size'") == std::string::npos &&
        what.find("unknown key 'vocab_size'") == std::string::npos)
      throw;
    throw UsageError(what +
                     " (--config takes the training YAML; give the draft's model YAML "
                     "with --model-config)");
  }
  auto set = [&](const char* flag, const char* key, const std::string& value) {
    try {
      ktl::set_training_key(c, key, value);
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--") + flag + ": " + e.what());
    }
  };
  if (args.has("teacher"))
    set("teacher", "distill_teacher", fs::absolute(args.get("teacher")).string());
  if (args.has("alpha")) set("alpha", "distill_alpha", args.get("alpha"));
  if (args.has("temperature")) set("temperature", "distill_temperature", args.get("temperature"));
  if (args.has("top-k")) set("top-k", "distill_top_k", args.get("top-k"));
  if (c.distill_teacher.empty())
    throw UsageError("missing --teacher DIR (the checkpoint to distill)");
  if (c.lora_rank > 0) throw UsageError("distillation trains the whole draft: lora_rank must be 0");
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return c;
}

// The data must be tokenized with the teacher's tokenizer: the same ids mean the same pieces.
void check_data_tokenizer(const std::string& data_dir, const ktl::Tokenizer& teacher) {
  const fs::path train_bin = fs::path(data_dir) / "train.bin";
  if (!fs::exists(train_bin))
    throw std::runtime_error(train_bin.string() + " not found (run `ktl prepare-data` first)");
  const auto h = ktl::TokenShard::read_header(train_bin);
  if (int64_t(h.vocab_size) > teacher.vocab_size())
    throw std::runtime_error(
        train_bin.string() + " was tokenized with a " + std::to_string(h.vocab_size) +
        "-piece vocabulary but the teacher has " + std::to_string(teacher.vocab_size()));
  const fs::path tok = fs::path(data_dir) / "tokenizer.model";
  if (!fs::exists(tok)) {
    std::cout << "note: " << data_dir << " has no tokenizer.model; only its vocabulary size ("
              << h.vocab_size << ") was checked against the teacher's\n";
    return;
  }
  if (ktl::read_file(tok) == teacher.model_bytes()) return;
  auto data_tok = ktl::Tokenizer::load(tok.string());
  std::string diff;
  if (data_tok->vocab_size() != teacher.vocab_size())
    diff = std::to_string(data_tok->vocab_size()) + " pieces vs the teacher's " +
           std::to_string(teacher.vocab_size());
  for (int i = 0; diff.empty() && i < teacher.vocab_size(); ++i)
    if (data_tok->id_to_piece(i) != teacher.id_to_piece(i))
      diff = "id " + std::to_string(i) + " is '" + data_tok->id_to_piece(i) + "' there, '" +
             teacher.id_to_piece(i) + "' in the teacher";
  if (diff.empty()) return;  // the same pieces, serialised differently
  throw std::runtime_error(tok.string() + " is not the teacher's tokenizer (" + diff +
                           "): prepare the data with the teacher's (ktl prepare-data --tokenizer "
                           "TEACHER/tokenizer.model)");
}

// A new draft from the model YAML (vocabulary and context from the teacher), or the checkpoint
// of --resume-from / --init-from.
ktl::Transformer build_student(const Args& args, const ktl::TrainingConfig& c,
                               const ktl::DistillTeacher& teacher, const torch::Device& device) {
  const ktl::ModelConfig& tc = teacher.config();
  if (args.has("resume-from") || args.has("init-from")) {
    ktl::TrainingStart s;
    try {
      s = ktl::load_training_start(args.get("init-from"), args.get("resume-from"), c, device);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
    if (s.ck.config.vocab_size != tc.vocab_size ||
        s.ck.tokenizer->model_bytes() != teacher.tokenizer()->model_bytes())
      throw std::runtime_error("the draft checkpoint's tokenizer (" +
                               std::to_string(s.ck.config.vocab_size) +
                               " pieces) is not the teacher's (" + std::to_string(tc.vocab_size) +
                               "): a draft must propose the teacher's own tokens");
    return s.ck.model;
  }
  std::string path = args.get("model-config");
  if (path.empty()) path = ktl::cli::shipped_config_path(kDraftConfig);
  if (path.empty())
    throw UsageError(std::string("missing --model-config (") + kDraftConfig + " not found)");
  ktl::ModelConfig mc = ktl::load_model_config_yaml(path);
  std::cout << "draft: " << path << " with the teacher's vocab_size " << tc.vocab_size
            << " and max_seq_length " << tc.max_seq_length << " (the YAML says " << mc.vocab_size
            << " and " << mc.max_seq_length << ")\n";
  mc.vocab_size = tc.vocab_size;
  mc.max_seq_length = tc.max_seq_length;
  mc.validate();
  ktl::Transformer model(mc);
  model->init_weights(static_cast<uint64_t>(c.seed));
  model->to(device);
  return model;
}

void print_header(const ktl::TrainingConfig& c, ktl::TransformerImpl& draft,
                  const ktl::DistillTeacher& teacher, const torch::Device& device) {
  const ktl::ModelConfig &d = draft.config(), &t = teacher.config();
  std::cout << "resolved training config:\n" << c.to_yaml();
  std::cout << "draft: " << d.num_parameters() << " parameters, " << d.num_layers
            << " layers, hidden " << d.hidden_size << ", vocab " << d.vocab_size << "\n"
            << "teacher: " << teacher.identity().path << ", " << t.num_parameters()
            << " parameters, " << t.num_layers << " layers, hidden " << t.hidden_size
            << " (teacher/draft forward FLOPs per token: "
            << t.flops_per_token(c.max_seq_length) / d.flops_per_token(c.max_seq_length)
            << "x); device " << device.str() << "\n"
            << ktl::describe(ktl::current_thread_pools()) << "\n"
            << "effective batch: " << c.batch_size << " x " << c.gradient_accumulation_steps
            << " x " << c.max_seq_length << " = "
            << int64_t(c.batch_size) * c.gradient_accumulation_steps * c.max_seq_length
            << " tokens/step\n"
            << std::flush;
}

int run_distill(const Args& args) {
  if (args.has("resume-from") && args.has("init-from"))
    throw UsageError("--resume-from and --init-from are exclusive");
  if (!args.has("data")) throw UsageError("missing required flag --data");
  const ktl::TrainingConfig c = resolve_config(args);
  std::string output_dir = args.has("out") ? args.get("out") : args.get("output-dir");
  if (output_dir.empty() && args.has("resume-from"))
    output_dir = fs::absolute(args.get("resume-from")).parent_path().string();
  if (output_dir.empty()) throw UsageError("missing required flag --out");
  ktl::apply_thread_policy(c.num_threads);  // 0 = every core
  const torch::Device device = ktl::resolve_device(c.device);
  ktl::jobs::ChildSinks sinks(args.get("job-db"), args.get_int("job-id", 0));

  auto teacher = ktl::DistillTeacher::load(c.distill_teacher, device);
  check_data_tokenizer(args.get("data"), *teacher->tokenizer());
  ktl::Transformer draft = build_student(args, c, *teacher, device);
  draft->train();
  print_header(c, *draft, *teacher, device);

  ktl::TrainerData data = ktl::open_training_data(args.get("data"));
  data.teacher = teacher;
  ktl::Trainer trainer(c, draft, teacher->tokenizer(), std::move(data), output_dir, sinks.sink(),
                       device);
  if (args.has("resume-from")) trainer.restore(args.get("resume-from"));
  ktl::TrainResult r;
  {
    ktl::cli::StopOnSignal<ktl::Trainer> stop(&trainer);
    r = trainer.run();
  }
  sinks.sink().flush();
  if (r.status == ktl::TrainStatus::kDiverged) throw std::runtime_error(r.message);
  std::cout << "distillation " << ktl::train_status_name(r.status) << " at step " << r.step;
  if (r.last_eval) std::cout << "; val loss " << r.last_eval->loss << ", bpc " << r.last_eval->bpc;
  std::cout << "; checkpoint " << r.last_checkpoint << " (also " << output_dir << "/latest)\n";
  return 0;
}

std::vector<ktl::cli::Flag> distill_flags() {
  std::vector<ktl::cli::Flag> f = {
      {"teacher", "teacher checkpoint directory (when resuming: the run's own)"},
      {"data", "data directory with train.bin, val.bin (tokenized with the teacher's tokenizer)",
       "", false, true},
      {"out", "where checkpoint-<step>/, latest, best and final go (resume: the parent)"},
      {"output-dir", "same as --out"},
      {"model-config", "draft model YAML; vocab_size and max_seq_length come from the teacher",
       kDraftConfig},
      {"config", "training YAML over the built-in defaults (when resuming, the checkpoint's)"},
      {"alpha", "weight of the KL term; 1 - alpha weighs the next-token loss (distill_alpha)",
       "0.5"},
      {"temperature", "softening T of teacher and draft in the KL (distill_temperature)", "1"},
      {"top-k", "KL over the teacher's top k tokens; 0 = whole vocabulary (distill_top_k)", "64"},
      {"resume-from", "draft checkpoint to continue from (the same teacher is required)"},
      {"init-from", "draft checkpoint whose weights start a new run at step 0"},
      {"job-db", "job database (set by the training daemon)"},
      {"job-id", "job id in --job-db"},
  };
  for (const auto& key : ktl::training_config_keys()) {
    std::string flag = key;
    for (char& ch : flag)
      if (ch == '_') ch = '-';
    const bool is_bool = key == "fp16" || key == "gradient_checkpointing";
    f.push_back({flag, "overrides training key '" + key + "'", "", is_bool});
  }
  return f;
}

KTL_COMMAND(ktl::cli::Command{
    "distill",
    "Train a small draft model on a teacher's output distribution (KL + next-token loss), for "
    "speculative decoding.",
    distill_flags(), run_distill, /*accepts_unknown_flags=*/true});

}  // namespace
