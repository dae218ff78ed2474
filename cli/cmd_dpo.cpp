// ktl dpo: preference tuning (DPO) of an SFT checkpoint; see docs/training-guide.md.
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "core/data/chat_data.h"
#include "core/model/checkpoint.h"
#include "core/model/device.h"
#include "core/model/thread_policy.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/console_metrics_sink.h"
#include "core/train/dpo.h"
#include "jobs/child_reporting.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

int run_dpo(const Args& args) {
  ktl::DpoConfig cfg;
  cfg.beta = args.get_double("beta", cfg.beta);
  cfg.learning_rate = args.get_double("learning-rate", cfg.learning_rate);
  cfg.max_steps = args.get_int("max-steps", cfg.max_steps);
  cfg.batch_size = int(args.get_int("batch-size", cfg.batch_size));
  cfg.max_seq_length = int(args.get_int("max-seq-length", cfg.max_seq_length));
  cfg.eval_steps = int(args.get_int("eval-steps", cfg.eval_steps));
  cfg.log_steps = int(args.get_int("log-steps", cfg.log_steps));
  cfg.warmup_steps = int(args.get_int("warmup-steps", cfg.warmup_steps));
  cfg.seed = args.get_int("seed", cfg.seed);
  if (cfg.beta <= 0) throw UsageError("--beta must be > 0");
  if (cfg.batch_size < 1 || cfg.max_steps < 0 || cfg.log_steps < 1 || cfg.max_seq_length < 2)
    throw UsageError("--batch-size, --log-steps must be >= 1, --max-steps >= 0");
  const double val_fraction = args.get_double("val-fraction", 0.1);
  if (val_fraction < 0 || val_fraction >= 1) throw UsageError("--val-fraction must be in [0, 1)");
  std::cout << ktl::describe(ktl::apply_thread_policy(int(args.get_int("num-threads", 0)))) << "\n";
  const torch::Device device = ktl::resolve_device(args.get("device", "auto"));

  ktl::ConsoleMetricsSink console;
  std::unique_ptr<ktl::MetricsSink> job_sink, tee;
  ktl::MetricsSink* sink = &console;
  if (args.has("job-db")) {
    job_sink = ktl::jobs::make_job_sink(args.get("job-db"), args.get_int("job-id", 0));
    tee = ktl::jobs::make_tee_sink(console, *job_sink);
    sink = tee.get();
  }

  const std::string from = args.get("init-from");
  auto policy = ktl::load_checkpoint(from, device);
  auto reference = ktl::load_checkpoint(from, device);
  if (ktl::add_chat_markers(policy)) ktl::add_chat_markers(reference);
  if (cfg.max_seq_length > policy.config.max_seq_length)
    throw UsageError("--max-seq-length exceeds the model's " +
                     std::to_string(policy.config.max_seq_length));
  auto tmpl = std::make_shared<ktl::ChatTemplate>(ktl::ChatTemplate::require(policy.tokenizer));

  std::vector<ktl::PreferencePair> train, val;
  for (auto& p : ktl::read_preference_file(args.get("data")))
    (ktl::is_held_out(p.prompt, val_fraction, uint64_t(cfg.seed)) ? val : train)
        .push_back(std::move(p));
  ktl::DpoTrainer dpo(cfg, policy.model, reference.model, tmpl, train, val, *sink, device);
  std::cout << "dpo: " << dpo.num_train_pairs() << " train / " << dpo.num_val_pairs()
            << " held-out pairs (" << dpo.dropped_pairs() << " longer than " << cfg.max_seq_length
            << " tokens dropped); beta " << cfg.beta << ", lr " << cfg.learning_rate << "\n"
            << std::flush;
  const ktl::DpoStats last = dpo.run();

  ktl::CheckpointMeta meta;
  meta.step = cfg.max_steps;
  const std::string split = dpo.num_val_pairs() ? "val" : "train";
  meta.metrics[split + "/dpo_loss"] = last.loss;
  meta.metrics[split + "/reward_margin"] = last.reward_margin;
  meta.metrics[split + "/reward_accuracy"] = last.reward_accuracy;
  meta.extra["dpo_init_from"] = from;
  meta.extra["dpo_beta"] = std::to_string(cfg.beta);
  const std::string out =
      (fs::path(args.get("output-dir")) / ("checkpoint-" + std::to_string(cfg.max_steps))).string();
  ktl::save_checkpoint(out, *policy.model, policy.tokenizer->model_bytes(), meta);
  const fs::path final_link = fs::path(args.get("output-dir")) / "final";
  std::error_code ec;
  fs::remove(final_link, ec);
  fs::create_directory_symlink(fs::path(out).filename(), final_link, ec);
  if (job_sink) job_sink->checkpoint(cfg.max_steps, out, meta.metrics);
  sink->flush();
  std::printf("dpo done: %s reward accuracy %.3f, reward margin %.4f, loss %.4f; checkpoint %s\n",
              split.c_str(), last.reward_accuracy, last.reward_margin, last.loss, out.c_str());
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "dpo",
    "Preference-tune an SFT checkpoint with DPO ({prompt|messages, chosen, rejected} JSONL).",
    {{"init-from", "SFT checkpoint (policy start and frozen reference)", "", false, true},
     {"data", "preference JSONL (see `ktl chat-data --build-prefs`)", "", false, true},
     {"output-dir", "where checkpoint-<steps>/ and final go", "", false, true},
     {"beta", "KL strength of the reference anchor", "0.1"},
     {"learning-rate", "peak learning rate", "5e-6"},
     {"max-steps", "optimizer steps", "200"},
     {"batch-size", "preference pairs per step", "8"},
     {"max-seq-length", "prompt + reply tokens (longer pairs are dropped)", "256"},
     {"warmup-steps", "linear warmup", "10"},
     {"eval-steps", "held-out evaluation every N steps", "50"},
     {"log-steps", "progress line every N steps", "10"},
     {"val-fraction", "held-out share of prompts (hash split)", "0.1"},
     {"seed", "batch order and split", "1234"},
     {"device", "auto, cpu, cuda or mps", "auto"},
     {"num-threads", "threads (0 = every core)", "0"},
     {"job-db", "job database (set by the training daemon)"},
     {"job-id", "job id in --job-db"}},
    run_dpo});

}  // namespace
