// ktl eval: loss, perplexity and bits per character of a checkpoint on a data split.
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "core/data/token_shard.h"
#include "core/model/checkpoint.h"
#include "core/model/device.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/console_metrics_sink.h"
#include "core/train/data_loader.h"
#include "core/train/evaluation.h"
#include "core/train/mixed_precision.h"
#include "core/train/training_config.h"
#include "jobs/child_reporting.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

int run_eval(const Args& args) {
  const std::string split = args.get("split", "test");
  if (split != "test" && split != "val" && split != "train")
    throw UsageError("--split must be test, val or train, got '" + split + "'");
  const fs::path shard = fs::path(args.get("data")) / (split + ".bin");
  if (!fs::exists(shard)) throw std::runtime_error(shard.string() + " not found");
  const int threads = int(args.get_int("num-threads", 0));
  if (threads > 0) torch::set_num_threads(threads);
  const torch::Device device = ktl::resolve_device(args.get("device", "auto"));

  auto ck = ktl::load_checkpoint(args.get("model"), device);
  const int seq = int(args.get_int("max-seq-length", std::min(256, ck.config.max_seq_length)));
  if (seq < 2 || seq > ck.config.max_seq_length)
    throw UsageError("--max-seq-length must be in [2, " + std::to_string(ck.config.max_seq_length) +
                     "]");
  const int batch = int(args.get_int("batch-size", 8));
  const int max_batches = int(args.get_int("max-batches", 50));
  if (batch <= 0 || max_batches <= 0)
    throw UsageError("--batch-size and --max-batches must be positive");

  if (int64_t(ktl::TokenShard::read_header(shard).vocab_size) > ck.config.vocab_size)
    throw std::runtime_error(shard.string() + " was tokenized with a larger vocabulary than " +
                             "the checkpoint's tokenizer (" + std::to_string(ck.config.vocab_size) +
                             " pieces)");
  ktl::TrainingConfig pc;  // only for the precision choice
  pc.bf16 = args.get("bf16", "auto");
  if (pc.bf16 != "auto" && pc.bf16 != "true" && pc.bf16 != "false")
    throw UsageError("--bf16 must be auto, true or false");
  std::string why;
  const auto precision = ktl::choose_precision(pc, device, &why);

  ktl::EvalBatches batches(ktl::open_token_shard(shard.string()), batch, seq, max_batches);
  const int64_t chars = batches.count_target_chars(*ck.tokenizer);
  const auto r = ktl::evaluate(*ck.model, batches, chars, precision, device);

  if (args.has("job-db")) {
    auto sink = ktl::jobs::make_job_sink(args.get("job-db"), args.get_int("job-id", 0));
    sink->metric(split + "/loss", ck.meta.step, r.loss);
    sink->metric(split + "/ppl", ck.meta.step, r.ppl);
    sink->metric(split + "/bpc", ck.meta.step, r.bpc);
    sink->flush();
  }
  std::printf(
      "checkpoint: %s (step %lld)\nsplit: %s (%lld batches x %d x %d; %lld tokens, %lld chars)\n"
      "precision: %s\nloss: %.4f\nperplexity: %.3f\nbits per character: %.4f\n",
      args.get("model").c_str(), (long long)ck.meta.step, split.c_str(),
      (long long)batches.num_batches(), batch, seq, (long long)r.tokens, (long long)r.chars,
      why.c_str(), r.loss, r.ppl, r.bpc);
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "eval",
    "Evaluate a checkpoint: loss, perplexity and bits per character on a data split.",
    {{"model", "checkpoint directory", "", false, true},
     {"data", "data directory with <split>.bin", "", false, true},
     {"split", "test, val or train", "test"},
     {"max-batches", "batches of the fixed subset (from the start of the split)", "50"},
     {"batch-size", "sequences per batch", "8"},
     {"max-seq-length", "tokens per sequence", "min(256, model)"},
     {"bf16", "auto, true or false", "auto"},
     {"device", "auto, cpu, cuda or mps", "auto"},
     {"num-threads", "intra-op threads (0 = default)", "0"},
     {"job-db", "job database (set by the training daemon)"},
     {"job-id", "job id in --job-db"}},
    run_eval});

}  // namespace
