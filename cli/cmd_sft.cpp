// ktl sft: supervised fine-tuning on chat data (assistant-only loss, packed conversations);
// see docs/training-guide.md, "Instruction tuning".
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/chat_split_flags.h"
#include "cli/command.h"
#include "cli/training_overrides.h"
#include "core/data/chat_data.h"
#include "core/data/chat_split.h"
#include "core/model/checkpoint.h"
#include "core/model/device.h"
#include "core/model/thread_policy.h"
#include "core/tokenizer/chat_format.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/console_metrics_sink.h"
#include "core/train/lora_training.h"
#include "core/train/sft_batches.h"
#include "core/train/trainer.h"
#include "core/train/training_config.h"
#include "jobs/child_reporting.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

std::atomic<ktl::Trainer*> g_trainer{nullptr};

extern "C" void on_sft_stop_signal(int sig) {
  if (auto* t = g_trainer.load()) t->request_stop();
  std::signal(sig, SIG_DFL);
}

const std::vector<std::string> kOwnFlags = {
    "config",  "data",         "output-dir",    "init-from",  "resume-from",
    "no-pack", "val-fraction", "test-fraction", "split-seed", "format",
    "samples", "job-db",       "job-id",        "chat-format"};

ktl::TrainingConfig resolve_config(const Args& args) {
  ktl::TrainingConfig c =
      ktl::cli::resolve_training_overrides(args, ktl::sft_training_defaults(), kOwnFlags, "sft");
  // A LoRA run starts from the LoRA defaults: a learning rate or gradient_checkpointing set by
  // --config or a flag is kept, an unset one is the adapter's default.
  if (c.lora_rank > 0)
    c = ktl::cli::resolve_training_overrides(args, ktl::lora_sft_training_defaults(), kOwnFlags,
                                             "sft");
  c.validate();
  return c;
}

int run_sft(const Args& args) {
  // The jobs daemon resumes an interrupted sft job with --resume-from next to its --init-from.
  if (!args.has("resume-from") && !args.has("init-from"))
    throw UsageError("give --init-from CKPT (or --resume-from CKPT)");
  const ktl::TrainingConfig c = resolve_config(args);
  std::string output_dir = args.get("output-dir");
  if (output_dir.empty() && args.has("resume-from"))
    output_dir = fs::absolute(args.get("resume-from")).parent_path().string();
  if (output_dir.empty()) throw UsageError("missing required flag --output-dir");
  const ktl::ChatSplitConfig split_cfg = ktl::cli::chat_split_config(args);
  const int n_samples = int(args.get_int("samples", 5));
  const bool pack = !args.get_bool("no-pack");
  std::cout << ktl::describe(ktl::apply_thread_policy(c.num_threads)) << "\n";
  const torch::Device device = ktl::resolve_device(c.device);

  ktl::ConsoleMetricsSink console;
  std::unique_ptr<ktl::MetricsSink> job_sink, tee;
  ktl::MetricsSink* sink = &console;
  if (args.has("job-db")) {
    job_sink = ktl::jobs::make_job_sink(args.get("job-db"), args.get_int("job-id", 0));
    tee = ktl::jobs::make_tee_sink(console, *job_sink);
    sink = tee.get();
  }

  const std::string from =
      args.has("resume-from") ? args.get("resume-from") : args.get("init-from");
  ktl::TrainingStart start;
  try {
    start = ktl::load_training_start(args.get("init-from"), args.get("resume-from"), c, device);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  auto& ck = start.ck;
  const int64_t old_vocab = ck.config.vocab_size;
  // "chatml" moves a checkpoint whose tokenizer only reserved the legacy markers (made before
  // ChatML) to ChatML; a resumed run keeps the format it started with.
  const std::string want_format = args.has("chat-format") ? args.get("chat-format") : "keep";
  if (want_format != "keep" && want_format != "chatml")
    throw ktl::cli::UsageError("--chat-format must be keep or chatml, not '" + want_format + "'");
  const ktl::ChatFormat want = want_format == "chatml" && !args.has("resume-from")
                                   ? ktl::ChatFormat::kChatML
                                   : ktl::ChatFormat::kNone;
  const bool grew = ktl::add_chat_markers(ck, want);
  // The adapter must fit the base on disk: a vocabulary grown here would not be in it.
  if (grew && start.lora_base)
    throw UsageError(from + " lacks the chat markers" +
                     std::string(want == ktl::ChatFormat::kChatML ? " of ChatML" : "") +
                     ": LoRA keeps the base unchanged, so give it a base that has them (a full "
                     "`ktl sft` checkpoint, or a tokenizer trained with them)");
  if (grew)
    std::cout << "added the chat markers to " << from << ": vocabulary " << old_vocab << " -> "
              << ck.config.vocab_size << " (new embedding rows = mean of the old rows)\n";
  ktl::attach_training_lora(*ck.model, c);
  if (start.lora_base) std::cout << ktl::describe_lora(*ck.model, c, *start.lora_base) << "\n";
  auto tmpl = std::make_shared<ktl::ChatTemplate>(ktl::ChatTemplate::require(ck.tokenizer));

  // The one split of chat-data and eval --chat: train here, val for val/loss and samples, test
  // left for the final `ktl eval --chat --split test`.
  const ktl::ChatSplit split =
      ktl::load_chat_split(args.get("data"), split_cfg, ktl::cli::chat_data_format(args));
  std::cout << split.read_report << "\nsplit: " << split.summary() << "\n";
  if (split.train.empty()) throw std::runtime_error("no training conversations after the split");
  int64_t cut_train = 0, cut_val = 0;
  ktl::TrainerData data;
  data.chat_template = tmpl;
  data.sft_train = std::make_shared<ktl::SftBatches>(
      ktl::tokenize_conversations(*tmpl, split.train, c.max_seq_length + 1, &cut_train),
      c.max_seq_length, pack);
  if (!split.val.empty()) {
    data.sft_val = std::make_shared<ktl::SftBatches>(
        ktl::tokenize_conversations(*tmpl, split.val, c.max_seq_length + 1, &cut_val),
        c.max_seq_length, pack);
    for (int i = 0; i < n_samples && i < int(split.val.size()); ++i)
      data.sample_chats.push_back(split.val[size_t(i)]);
  }
  const auto& tr = *data.sft_train;
  std::cout << "resolved training config:\n" << c.to_yaml();
  std::cout << "chat data: " << split.train.size() << " train / " << split.val.size()
            << " val conversations (" << split.test.size() << " test ones not used); "
            << (pack ? "packed" : "one per row") << " into " << tr.num_rows() << " rows of "
            << c.max_seq_length << " (" << tr.num_target_tokens() << " assistant tokens, "
            << 100.0 * double(tr.num_target_tokens()) / double(tr.num_rows() * c.max_seq_length)
            << "% of positions); shortened " << cut_train << " + " << cut_val << "\n"
            << std::flush;
  ck.model->train();
  ktl::Trainer trainer(c, ck.model, ck.tokenizer, std::move(data), output_dir, *sink, device);
  if (start.lora_base) trainer.set_lora_base(*start.lora_base);
  if (args.has("resume-from")) trainer.restore(args.get("resume-from"));
  g_trainer.store(&trainer);
  std::signal(SIGTERM, on_sft_stop_signal);
  std::signal(SIGINT, on_sft_stop_signal);
  ktl::TrainResult r = trainer.run();
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
  g_trainer.store(nullptr);
  sink->flush();
  if (r.status == ktl::TrainStatus::kDiverged) throw std::runtime_error(r.message);
  std::cout << "sft " << ktl::train_status_name(r.status) << " at step " << r.step;
  if (r.last_eval) std::cout << "; held-out assistant loss " << r.last_eval->loss;
  std::cout << "; checkpoint " << r.last_checkpoint << " (also " << output_dir << "/latest)\n";
  return 0;
}

std::vector<ktl::cli::Flag> sft_flags() {
  std::vector<ktl::cli::Flag> f = {
      {"init-from", "checkpoint to fine-tune (gets the chat markers if it lacks them)"},
      {"chat-format",
       "keep (the checkpoint's own format; ChatML when it has none) or chatml (also move a "
       "legacy-format checkpoint to ChatML)",
       "keep"},
      {"resume-from", "SFT checkpoint to continue from"},
      {"data",
       "chat data (OpenAI messages .jsonl, ShareGPT or Alpaca .json/.jsonl, Q/A .tsv) or a "
       "split directory from `ktl chat-data --split-out`",
       "", false, true},
      {"output-dir", "where checkpoint-<step>/, latest, best and final go"},
      {"config", "training YAML over the SFT defaults"},
      {"no-pack", "one conversation per row (padded) instead of packing", "", true},
      {"samples", "held-out prompts answered at each sample step", "5"},
      {"job-db", "job database (set by the training daemon)"},
      {"job-id", "job id in --job-db"},
  };
  for (auto& x : ktl::cli::chat_split_flags()) f.push_back(x);
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
    "sft", "Instruction-tune a checkpoint on chat data (loss on assistant tokens only, packed).",
    sft_flags(), run_sft, /*accepts_unknown_flags=*/true});

}  // namespace
