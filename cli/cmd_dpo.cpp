// ktl dpo: preference tuning (DPO or ORPO) of an SFT checkpoint, with the trainer's checkpoints,
// resume, SIGTERM handling, precision and job reporting; see docs/training-guide.md.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>

#include "cli/command.h"
#include "cli/training_overrides.h"
#include "cli/dpo_onpolicy.h"
#include "cli/stop_on_signal.h"
#include "core/base/file_util.h"
#include "core/data/chat_data.h"
#include "core/data/chat_split.h"
#include "core/model/checkpoint.h"
#include "core/model/device.h"
#include "core/model/thread_policy.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/dpo.h"
#include "core/train/lora_training.h"
#include "core/train/run_directory.h"
#include "jobs/child_reporting.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

constexpr const char* kOnPolicyFile = "rejected_from_model.jsonl";

const std::vector<std::string> kOwnFlags = {"init-from",
                                            "resume-from",
                                            "data",
                                            "output-dir",
                                            "config",
                                            "loss",
                                            "beta",
                                            "orpo-lambda",
                                            "val-fraction",
                                            "rejected-from-model",
                                            "rejected-max-tokens",
                                            "rejected-temperature",
                                            "rejected-top-p",
                                            "job-db",
                                            "job-id"};

// Everything a run is made of; a resumed run starts from what its checkpoint recorded.
struct DpoSettings {
  ktl::DpoConfig cfg;
  double val_fraction = 0.1;
  std::string init_from;  // the SFT checkpoint: policy start, reference, on-policy sampler
  bool rejected_from_model = false;
  ktl::cli::OnPolicySampling sampling;
};

// DPO defaults, then --config (or the checkpoint's training_config.yaml), then each flag.
ktl::TrainingConfig resolve_training_config(const Args& args) {
  return ktl::cli::resolve_training_overrides(args, ktl::dpo_training_defaults(), kOwnFlags,
                                              "dpo");
}

DpoSettings resolve_settings(const Args& args) {
  DpoSettings s;
  std::map<std::string, std::string> noted;  // meta.json "extra" of the checkpoint resumed
  if (args.has("resume-from")) {
    const std::string dir = args.get("resume-from");
    const ktl::DpoCheckpointInfo info = ktl::read_dpo_checkpoint_info(dir);
    s.cfg.loss = info.loss, s.cfg.beta = info.beta, s.cfg.orpo_lambda = info.orpo_lambda;
    noted = ktl::read_checkpoint_meta(dir).extra;
  }
  auto note = [&](const std::string& key, const std::string& fallback) {
    auto it = noted.find(key);
    return it == noted.end() ? fallback : it->second;
  };
  s.cfg.train = resolve_training_config(args);
  try {
    if (args.has("loss")) s.cfg.loss = ktl::parse_preference_loss(args.get("loss"));
    s.cfg.beta = args.get_double("beta", s.cfg.beta);
    s.cfg.orpo_lambda = args.get_double("orpo-lambda", s.cfg.orpo_lambda);
    s.cfg.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  s.val_fraction = args.get_double("val-fraction", std::stod(note("dpo_val_fraction", "0.1")));
  if (s.val_fraction < 0 || s.val_fraction >= 1)
    throw UsageError("--val-fraction must be in [0, 1)");
  s.init_from = args.get("init-from", note("dpo_init_from", ""));
  s.rejected_from_model = args.has("rejected-from-model")
                              ? args.get_bool("rejected-from-model")
                              : note("dpo_rejected_from_model", "false") == "true";
  auto& o = s.sampling;
  o.max_tokens = int(args.get_int("rejected-max-tokens", o.max_tokens));
  o.temperature = float(args.get_double("rejected-temperature", o.temperature));
  o.top_p = float(args.get_double("rejected-top-p", o.top_p));
  if (o.max_tokens < 1 || o.temperature < 0 || o.top_p <= 0 || o.top_p > 1)
    throw UsageError(
        "--rejected-max-tokens must be >= 1, --rejected-temperature >= 0, "
        "--rejected-top-p in (0, 1]");
  o.seed = uint64_t(s.cfg.train.seed);
  o.device = s.cfg.train.device;
  o.num_threads = s.cfg.train.num_threads;
  return s;
}

struct PreferenceData {
  std::vector<ktl::PreferencePair> train, val;
};

// Training and held-out pairs of a preference file: FILE.jsonl and its FILE.val.jsonl sibling
// when there is one (`ktl chat-data --build-prefs` writes them from the one leak-free split),
// else FILE.jsonl split by prompt hash (--val-fraction, --seed).
PreferenceData split_pairs(const std::string& path, const DpoSettings& s, ktl::MetricsSink& sink) {
  PreferenceData d;
  const std::string val = ktl::preference_split_path(path, "val");
  if (fs::exists(val)) {
    auto p = ktl::read_preference_split(path);
    d.train = std::move(p.train), d.val = std::move(p.val);
    sink.log("held-out pairs: " + val);
    return d;
  }
  for (auto& p : ktl::read_preference_file(path))
    (ktl::is_held_out(p.prompt, s.val_fraction, uint64_t(s.cfg.train.seed)) ? d.val : d.train)
        .push_back(std::move(p));
  sink.log("held-out pairs: a prompt-hash split of " + path + " (--val-fraction " +
           std::to_string(s.val_fraction) + ")");
  return d;
}

// Every rejected answer sampled from the SFT model (train pairs, then held-out ones).
void sample_rejected(PreferenceData& d, const DpoSettings& s, ktl::MetricsSink& sink) {
  if (s.init_from.empty()) throw UsageError("--rejected-from-model needs --init-from");
  std::vector<ktl::PreferencePair> all = std::move(d.train);
  const size_t n_train = all.size();
  for (auto& p : d.val) all.push_back(std::move(p));
  const auto rep = ktl::cli::sample_rejected_from_model(
      s.init_from, all, s.sampling, [&](const std::string& line) { sink.log(line); });
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "rejected from model: %lld of %zu pairs now on-policy (%lld needed a redraw, "
                "%lld keep the file's answer), %lld tokens in %.1fs (%.0f tok/s)",
                (long long)rep.sampled, all.size(), (long long)rep.resampled,
                (long long)rep.kept_original, (long long)rep.tokens, rep.seconds,
                rep.seconds > 0 ? double(rep.tokens) / rep.seconds : 0.0);
  sink.log(buf);
  d.val.assign(std::make_move_iterator(all.begin() + long(n_train)),
               std::make_move_iterator(all.end()));
  all.resize(n_train);
  d.train = std::move(all);
}

// The pairs of the run. With --rejected-from-model the rejected answers are the SFT model's,
// sampled once and kept in OUTPUT_DIR/rejected_from_model.jsonl (+ .val.jsonl), which a
// resumed run reads back instead of sampling again.
PreferenceData load_pairs(const Args& args, const DpoSettings& s, const std::string& output_dir,
                          ktl::MetricsSink& sink) {
  const std::string onpolicy = (fs::path(output_dir) / kOnPolicyFile).string();
  if (s.rejected_from_model && args.has("resume-from") && fs::exists(onpolicy)) {
    auto p = ktl::read_preference_split(onpolicy);
    sink.log("rejected from model: reusing " + onpolicy);
    return {std::move(p.train), std::move(p.val)};
  }
  PreferenceData d = split_pairs(args.get("data"), s, sink);
  if (!s.rejected_from_model) return d;
  sample_rejected(d, s, sink);
  fs::create_directories(output_dir);
  const std::string val = ktl::preference_split_path(onpolicy, "val");
  ktl::write_file_atomic(val,
                         ktl::preferences_to_jsonl(d.val));  // first: the train file marks it done
  ktl::write_file_atomic(onpolicy, ktl::preferences_to_jsonl(d.train));
  return d;
}

// The reference model, unless the loss needs none (orpo) or the checkpoint resumed from holds
// every pair's reference log-probabilities.
ktl::Transformer load_reference(const Args& args, const DpoSettings& s,
                                const torch::Device& device) {
  if (s.cfg.loss != ktl::PreferenceLoss::kDpo) return ktl::Transformer(nullptr);
  // LoRA: the reference is the policy with its adapter switched off; no second copy.
  if (s.cfg.train.lora_rank > 0) return ktl::Transformer(nullptr);
  if (args.has("resume-from") &&
      ktl::read_dpo_checkpoint_info(args.get("resume-from")).reference_complete)
    return ktl::Transformer(nullptr);
  if (s.init_from.empty()) throw UsageError("dpo needs --init-from (the reference model)");
  auto ref = ktl::load_checkpoint(s.init_from, device);
  ktl::add_chat_markers(ref);
  return ref.model;
}

void print_result(const ktl::DpoResult& r, const std::string& output_dir) {
  std::printf(
      "dpo %s at step %lld: %s loss %.4f, reward accuracy %.3f, reward margin %.4f; "
      "checkpoint %s (also %s/latest)\n",
      ktl::train_status_name(r.status), (long long)r.step, r.split.c_str(), r.last.loss,
      r.last.reward_accuracy, r.last.reward_margin, r.last_checkpoint.c_str(), output_dir.c_str());
}

int run_dpo(const Args& args) {
  if (!args.has("resume-from") && !args.has("init-from"))
    throw UsageError("give --init-from CKPT (or --resume-from CKPT)");
  const DpoSettings s = resolve_settings(args);
  std::string output_dir = args.get("output-dir");
  if (output_dir.empty() && args.has("resume-from"))
    output_dir = fs::absolute(args.get("resume-from")).parent_path().string();
  if (output_dir.empty()) throw UsageError("missing required flag --output-dir");
  std::cout << ktl::describe(ktl::apply_thread_policy(s.cfg.train.num_threads)) << "\n";
  const torch::Device device = ktl::resolve_device(s.cfg.train.device);
  ktl::jobs::ChildSinks sinks(args.get("job-db"), args.get_int("job-id", 0));
  ktl::MetricsSink& sink = sinks.sink();

  const PreferenceData data = load_pairs(args, s, output_dir, sink);
  ktl::TrainingStart start;
  try {
    start = ktl::load_training_start(s.init_from, args.get("resume-from"), s.cfg.train, device);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  auto& policy = start.ck;
  if (ktl::add_chat_markers(policy) && start.lora_base)
    throw UsageError(s.init_from +
                     " lacks the chat markers: LoRA keeps the base unchanged, so give it an SFT "
                     "checkpoint that has them");
  ktl::attach_training_lora(*policy.model, s.cfg.train);
  if (start.lora_base)
    sink.log(ktl::describe_lora(*policy.model, s.cfg.train, *start.lora_base));
  auto tmpl = std::make_shared<ktl::ChatTemplate>(ktl::ChatTemplate::require(policy.tokenizer));
  policy.model->train();
  ktl::DpoTrainer trainer(s.cfg, policy.model, load_reference(args, s, device), policy.tokenizer,
                          tmpl, data.train, data.val, output_dir, sink, device);
  if (start.lora_base) trainer.set_lora_base(*start.lora_base);
  trainer.set_checkpoint_note("dpo_init_from",
                              s.init_from.empty() ? "" : fs::absolute(s.init_from).string());
  trainer.set_checkpoint_note("dpo_data", fs::absolute(args.get("data")).string());
  trainer.set_checkpoint_note("dpo_val_fraction", std::to_string(s.val_fraction));
  trainer.set_checkpoint_note("dpo_rejected_from_model", s.rejected_from_model ? "true" : "false");
  std::cout << "resolved training config:\n" << s.cfg.train.to_yaml();
  std::cout << "dpo: loss " << ktl::preference_loss_name(s.cfg.loss) << " (beta " << s.cfg.beta
            << ", orpo lambda " << s.cfg.orpo_lambda << "); " << trainer.num_train_pairs()
            << " train / " << trainer.num_val_pairs() << " held-out pairs ("
            << trainer.dropped_pairs() << " longer than " << s.cfg.train.max_seq_length
            << " tokens dropped); " << s.cfg.train.batch_size << " x "
            << s.cfg.train.gradient_accumulation_steps << " pairs per step\n"
            << std::flush;
  if (args.has("resume-from")) trainer.restore(args.get("resume-from"));
  ktl::DpoResult r;
  {
    ktl::cli::StopOnSignal<ktl::DpoTrainer> stop(&trainer);
    r = trainer.run();
  }
  sink.flush();
  if (r.status == ktl::TrainStatus::kDiverged) throw std::runtime_error(r.message);
  print_result(r, output_dir);
  return 0;
}

std::vector<ktl::cli::Flag> dpo_flags() {
  std::vector<ktl::cli::Flag> f = {
      {"init-from", "SFT checkpoint: policy start, frozen reference, on-policy sampler"},
      {"resume-from", "dpo checkpoint to continue from (its settings are the defaults)"},
      {"data",
       "preference JSONL (see `ktl chat-data --build-prefs`); FILE.val.jsonl beside it is the "
       "held-out set",
       "", false, true},
      {"output-dir", "where checkpoint-<step>/, latest and final go"},
      {"config", "training YAML over the dpo defaults"},
      {"loss", "dpo, or orpo (reference-free: SFT loss + odds ratio)", "dpo"},
      {"beta", "dpo: KL strength of the reference anchor", "0.1"},
      {"orpo-lambda", "orpo: weight of the odds-ratio term", "0.1"},
      {"val-fraction", "held-out share of prompts (hash split) when there is no FILE.val.jsonl",
       "0.1"},
      {"rejected-from-model", "rejected answers sampled from --init-from (on-policy)", "", true},
      {"rejected-max-tokens", "--rejected-from-model: tokens per answer", "64"},
      {"rejected-temperature", "--rejected-from-model: sampling temperature", "0.8"},
      {"rejected-top-p", "--rejected-from-model: nucleus mass", "0.95"},
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
    "dpo",
    "Preference-tune an SFT checkpoint with DPO or ORPO ({prompt|messages, chosen, rejected} "
    "JSONL).",
    dpo_flags(), run_dpo, /*accepts_unknown_flags=*/true});

}  // namespace
