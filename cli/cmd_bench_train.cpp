// ktl bench-train: training throughput on random tokens (tokens/s, achieved GFLOP/s, peak RSS).
// bench/train_bench.sh runs it over model_tiny/model_small x fp32/bf16.
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "cli/command.h"
#include "core/model/device.h"
#include "core/model/model.h"
#include "core/model/model_config.h"
#include "core/model/thread_policy.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/console_metrics_sink.h"
#include "core/train/data_loader.h"
#include "core/train/mixed_precision.h"
#include "core/train/trainer.h"
#include "core/train/training_config.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux: KiB
}

double timed_steps(ktl::Trainer& t, int steps) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) t.train_step();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --data: the bare step loop against the real training loop (Trainer::run on the shards, with
// its logging, metrics and evaluation every --eval-steps) in one process, in alternating blocks
// of `steps` so a load change on a shared machine hits both. The loop's figure excludes
// evaluation and checkpoint time, as its "throughput:" line does.
int compare_with_loop(const Args& args, ktl::TrainingConfig c, ktl::ModelConfig mc,
                      ktl::Trainer& bare, int steps) {
  const int rounds = int(args.get_int("rounds", 3));
  if (rounds < 1) throw UsageError("--rounds must be >= 1");
  auto tok = ktl::Tokenizer::load((fs::path(args.get("data")) / "tokenizer.model").string());
  mc.vocab_size = tok->vocab_size();
  ktl::Transformer model(mc);
  model->init_weights(2);
  model->train();
  c.bf16 = ktl::precision_name(bare.precision()) == std::string("bf16") ? "true" : "false";
  c.eval_steps = int(args.get_int("eval-steps", 20));
  c.eval_batches = int(args.get_int("eval-batches", 20));
  c.log_steps = 10;
  c.save_steps = 0;
  c.sample_steps = 0;
  c.warmup_steps = 5;
  c.max_steps = int64_t(steps) * (rounds + 1);
  const std::string out = (fs::temp_directory_path() / "ktl-bench-train-loop").string();
  ktl::ConsoleMetricsSink quiet(stderr, /*print_metrics=*/false);
  ktl::Trainer loop(c, model, tok, ktl::open_training_data(args.get("data")), out, quiet,
                    torch::kCPU);
  loop.run(steps);  // warm-up block, not counted
  const double tokens = double(steps) * c.batch_size * c.max_seq_length;
  std::vector<double> bare_tps, loop_tps;
  for (int r = 0; r < rounds; ++r) {
    bare_tps.push_back(tokens / timed_steps(bare, steps));
    loop.run(steps * (r + 2));
    loop_tps.push_back(loop.loop_tokens_per_s());
    std::printf("round %d: bench-train %.0f tok/s, train loop %.0f tok/s (excl. eval)\n", r + 1,
                bare_tps.back(), loop_tps.back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  };
  const double b = median(bare_tps), l = median(loop_tps);
  // Each round pairs two adjacent blocks: the median of those ratios resists load drift.
  std::vector<double> paired;
  for (size_t i = 0; i < bare_tps.size(); ++i) paired.push_back(loop_tps[i] / bare_tps[i]);
  std::printf(
      "%s | %s | batch %dx%d | median bench-train %.0f tok/s | train loop %.0f tok/s | "
      "ratio of medians %.3f | median of per-round ratios %.3f\n",
      fs::path(args.get("model-config")).stem().c_str(), ktl::precision_name(bare.precision()),
      c.batch_size, c.max_seq_length, b, l, l / b, median(paired));
  fs::remove_all(out);
  return 0;
}

int run_bench_train(const Args& args) {
  auto mc = ktl::load_model_config_yaml(args.get("model-config"));
  ktl::TrainingConfig c;
  c.batch_size = int(args.get_int("batch-size", 8));
  c.max_seq_length = int(args.get_int("seq-len", std::min(256, mc.max_seq_length)));
  c.gradient_checkpointing = args.get_bool("gradient-checkpointing");
  c.bf16 = args.get("bf16", "auto");
  c.num_threads = int(args.get_int("threads", 0));
  c.warmup_steps = 1;
  c.max_steps = 1000000;
  c.device = args.get("device", "cpu");
  const torch::Device device = ktl::resolve_device(c.device);  // refuses an absent device
  if (c.bf16 != "auto" && c.bf16 != "true" && c.bf16 != "false")
    throw UsageError("--bf16 must be auto, true or false");
  const int steps = int(args.get_int("steps", 5)), warmup = int(args.get_int("warmup", 2));
  if (steps <= 0 || warmup < 0) throw UsageError("--steps must be positive, --warmup >= 0");
  std::printf("%s\n", ktl::describe(ktl::apply_thread_policy(c.num_threads)).c_str());
  if (args.get_bool("peak")) {
    std::printf("matmul peak (1024^3, %d threads): fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s\n",
                torch::get_num_threads(),
                ktl::measure_matmul_gflops(torch::kFloat32, 1024, 5, device),
                ktl::measure_matmul_gflops(torch::kBFloat16, 1024, 5, device));
  }
  // Random tokens: throughput does not depend on the text.
  std::mt19937_64 rng(1);
  std::vector<int64_t> toks(size_t(c.max_seq_length + 1) * c.batch_size * 64);
  for (auto& t : toks) t = int64_t(rng() % uint64_t(mc.vocab_size));
  ktl::Transformer model(mc);
  model->init_weights(1);
  model->to(device);
  model->train();
  const std::string out = (fs::temp_directory_path() / "ktl-bench-train").string();
  ktl::ConsoleMetricsSink sink(stderr);
  ktl::TrainerData data;
  data.train = std::make_shared<ktl::VectorTokenSource>(std::move(toks));
  ktl::Trainer t(c, model, nullptr, data, out, sink, device);
  for (int i = 0; i < warmup; ++i) t.train_step();
  if (args.has("data")) return compare_with_loop(args, c, mc, t, steps);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) t.train_step();  // each step reads the loss back: synchronous
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double tokens = double(steps) * c.batch_size * c.max_seq_length;
  const double tps = tokens / s;
  // Model FLOPs: backward = 2x forward; attention at the full (dense) context.
  const double gflops = 3.0 * mc.flops_per_token(c.max_seq_length) * tps / 1e9;
  // MFU: model FLOP/s over the device's peak at the training precision: --peak-tflops when
  // given (a datasheet figure, e.g. 989 for H100/H200 dense bf16), else a measured large matmul.
  double peak = args.get_double("peak-tflops", 0) * 1e3;
  const char* peak_src = "given";
  if (peak <= 0) {
    const auto dt = t.precision() == ktl::Precision::kFp32   ? torch::kFloat32
                    : t.precision() == ktl::Precision::kBf16 ? torch::kBFloat16
                                                             : torch::kHalf;
    peak = ktl::measure_matmul_gflops(dt, device.is_cpu() ? 1024 : 8192, 5, device);
    peak_src = "measured matmul";
  }
  std::printf(
      "%s | %s | %s | batch %dx%d | threads %d | checkpointing %s | %.0f tok/s | %.1f GFLOP/s | "
      "MFU %.1f%% of %.0f GFLOP/s (%s) | %.2f s/step | peak RSS %.0f MiB\n",
      fs::path(args.get("model-config")).stem().c_str(), device.str().c_str(),
      ktl::precision_name(t.precision()), c.batch_size, c.max_seq_length, torch::get_num_threads(),
      c.gradient_checkpointing ? "on" : "off", tps, gflops, 100.0 * gflops / peak, peak, peak_src,
      s / steps, peak_rss_mib());
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "bench-train",
    "Measure training throughput (tokens/s, GFLOP/s, peak RSS) on random tokens.",
    {{"model-config", "model YAML", "", false, true},
     {"batch-size", "sequences per step", "8"},
     {"seq-len", "tokens per sequence", "min(256, model)"},
     {"bf16", "auto, true or false", "auto"},
     {"threads", "threads (0 = every core, as ktl train)", "0"},
     {"steps", "timed steps", "5"},
     {"warmup", "untimed steps first", "2"},
     {"gradient-checkpointing", "recompute blocks in backward", "", true},
     {"peak", "also measure the matmul peak (fp32, bf16)", "", true},
     {"data", "also run the real training loop on this data dir and print the ratio", ""},
     {"rounds", "with --data: alternating blocks of --steps each", "3"},
     {"eval-steps", "with --data: evaluation every N steps in the real loop", "20"},
     {"eval-batches", "with --data: batches per evaluation", "20"},
     {"device", "cpu, cuda or mps (refused when absent)", "cpu"},
     {"peak-tflops", "device peak for MFU (default: a measured large matmul)", ""}},
    run_bench_train});

}  // namespace
