// ktl eval: loss, perplexity and bits per character of a checkpoint on a data split.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "cli/chat_split_flags.h"
#include "cli/kernels_flag.h"
#include "cli/command.h"
#include "core/adapters/lora_checkpoint.h"
#include "core/data/chat_data.h"
#include "core/data/chat_metrics.h"
#include "core/data/chat_split.h"
#include "core/data/token_shard.h"
#include "core/engine/engine_checkpoint.h"
#include "core/engine/engine_scoring.h"
#include "core/model/checkpoint.h"
#include "core/model/device.h"
#include "core/model/thread_policy.h"
#include "core/task_eval/likelihood_scorer.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/chat_evaluation.h"
#include "core/train/console_metrics_sink.h"
#include "core/train/data_loader.h"
#include "core/train/draft_agreement.h"
#include "core/train/evaluation.h"
#include "core/train/mixed_precision.h"
#include "core/train/training_config.h"
#include "jobs/child_reporting.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

// --chat: assistant-token loss on held-out conversations (--split, default test), greedy answers
// scored with chrF and ROUGE-L with bootstrap 95% intervals. A checkpoint without chat markers
// gets them in memory (mean-initialised rows), so a base model is measured with the same
// template as its SFT descendant.
int run_chat_eval(const Args& args, const torch::Device& device) {
  auto ck = ktl::load_checkpoint_merging_lora(args.get("model"), device);
  const bool grown = ktl::add_chat_markers(ck);
  const auto tmpl = ktl::ChatTemplate::require(ck.tokenizer);
  const std::string which = args.get("split", "test");
  if (which != "test" && which != "val" && which != "train" && which != "all")
    throw UsageError("--split must be test, val, train or all, got '" + which + "'");
  // The one split of chat-data and sft (core/data/chat_split.h).
  ktl::ChatSplit split = ktl::load_chat_split(args.get("data"), ktl::cli::chat_split_config(args),
                                              ktl::cli::chat_data_format(args));
  std::vector<ktl::ChatConversation> convs;
  if (which == "all") {
    for (auto* l : {&split.train, &split.val, &split.test})
      convs.insert(convs.end(), l->begin(), l->end());
  } else {
    convs = which == "test" ? split.test : which == "val" ? split.val : split.train;
  }
  std::printf("%s\nsplit: %s\n", split.read_report.c_str(), split.summary().c_str());
  if (convs.empty())
    throw std::runtime_error("no " + which + " conversations in " + args.get("data"));
  const int seq = int(args.get_int("max-seq-length", std::min(256, ck.config.max_seq_length)));
  const int answers = int(args.get_int("answers", 50));
  const int show = int(args.get_int("show", 5));
  ktl::TrainingConfig pc;
  pc.bf16 = args.get("bf16", "auto");
  std::string why;
  const auto precision = ktl::choose_precision(pc, device, &why);
  const auto r = ktl::evaluate_chat(*ck.model, tmpl, *ck.tokenizer, convs, seq,
                                    int(args.get_int("batch-size", 8)), answers,
                                    int(args.get_int("max-new-tokens", 64)), precision, device);
  if (args.has("job-db")) {
    auto sink = ktl::jobs::make_job_sink(args.get("job-db"), args.get_int("job-id", 0));
    sink->metric("chat/loss", ck.meta.step, r.loss.loss);
    sink->metric("chat/ppl", ck.meta.step, r.loss.ppl);
    sink->metric("chat/chrf", ck.meta.step, r.chrf);
    sink->metric("chat/chrf_ci_low", ck.meta.step, r.chrf_ci.low);
    sink->metric("chat/chrf_ci_high", ck.meta.step, r.chrf_ci.high);
    sink->metric("chat/rouge_l", ck.meta.step, r.rouge_l);
    sink->metric("chat/rouge_l_ci_low", ck.meta.step, r.rouge_l_ci.low);
    sink->metric("chat/rouge_l_ci_high", ck.meta.step, r.rouge_l_ci.high);
    sink->metric("chat/answers", ck.meta.step, double(r.chrf_ci.n));
    for (const auto& a : r.answers) sink->sample(ck.meta.step, a.prompt, a.answer, "chat");
    sink->flush();
  }
  std::printf(
      "checkpoint: %s (step %lld)%s\nconversations: %zu %s (%lld assistant tokens)\n"
      "assistant loss: %.4f\nassistant perplexity: %.3f\nchrF (n=6, beta=2): %s\n"
      "ROUGE-L (F1 over characters): %s\nanswers scored: %zu (intervals: percentile bootstrap "
      "over the answers, 1000 resamples)\n",
      args.get("model").c_str(), (long long)ck.meta.step,
      grown ? " [chat markers added in memory: base model]" : "", convs.size(), which.c_str(),
      (long long)r.loss.tokens, r.loss.loss, r.loss.ppl, ktl::format_interval(r.chrf_ci).c_str(),
      ktl::format_interval(r.rouge_l_ci).c_str(), r.answers.size());
  for (int i = 0; i < show && i < int(r.answers.size()); ++i)
    std::printf("--- Q: %s\n    ref: %s\n    answer: %s\n", r.answers[i].prompt.c_str(),
                r.answers[i].reference.c_str(), r.answers[i].answer.c_str());
  return 0;
}

// --task: multiple-choice accuracy by likelihood (core/task_eval/mc_task.h).
int run_task_eval(const Args& args, const torch::Device& device) {
  const std::string name = args.get("task");
  std::string path = args.get("task-data", "");
  if (path.empty()) path = ktl::default_task_path(name);
  if (path.empty()) throw UsageError("--task mc needs --task-data FILE.jsonl");
  const int shots = int(args.get_int("shots", 0));
  const int max_examples = int(args.get_int("max-examples", 0));
  if (shots < 0 || shots > 32) throw UsageError("--shots must be in [0, 32]");
  if (max_examples < 0) throw UsageError("--max-examples must be >= 0 (0 = all)");
  ktl::McTask task;
  try {
    task = ktl::load_mc_task(name, path, max_examples);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  auto ck = ktl::load_checkpoint_merging_lora(args.get("model"), device);
  ktl::McEvalOptions o;
  o.shots = shots;
  o.seed = uint64_t(args.get_int("seed", 1234));
  o.batch_size = int(args.get_int("batch-size", 16));
  if (o.batch_size <= 0) throw UsageError("--batch-size must be positive");
  const auto t0 = std::chrono::steady_clock::now();
  const ktl::McScore r = ktl::evaluate_mc_task(ck.model, *ck.tokenizer, task, o, device);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (args.has("job-db")) {
    auto sink = ktl::jobs::make_job_sink(args.get("job-db"), args.get_int("job-id", 0));
    sink->metric("task/" + r.task + "/acc", ck.meta.step, r.acc);
    sink->metric("task/" + r.task + "/acc_norm", ck.meta.step, r.acc_norm);
    sink->flush();
  }
  if (args.get_bool("json")) {
    std::printf("{\"task\": \"%s\", \"n\": %d, \"acc\": %.6f, \"acc_norm\": %.6f, \"shots\": %d}\n",
                r.task.c_str(), r.n, r.acc, r.acc_norm, r.shots);
  } else {
    std::printf(
        "checkpoint: %s (step %lld)\ntask: %s (%s), %d examples, %d-shot\n"
        "acc: %.4f\nacc_norm: %.4f\ntime: %.1f s\n",
        args.get("model").c_str(), (long long)ck.meta.step, r.task.c_str(), path.c_str(), r.n,
        r.shots, r.acc, r.acc_norm, secs);
  }
  return 0;
}

int run_eval(const Args& args) {
  ktl::cli::check_kernels_flag(args);
  if (args.has("task")) {
    ktl::apply_thread_policy(int(args.get_int("num-threads", 0)));
    return run_task_eval(args, ktl::resolve_device(args.get("device", "auto")));
  }
  if (!args.has("data")) throw UsageError("missing required flag --data (or give --task)");
  if (args.get_bool("chat")) {
    ktl::apply_thread_policy(int(args.get_int("num-threads", 0)));
    return run_chat_eval(args, ktl::resolve_device(args.get("device", "auto")));
  }
  const std::string split = args.get("split", "test");
  if (split != "test" && split != "val" && split != "train")
    throw UsageError("--split must be test, val or train, got '" + split + "'");
  const fs::path shard = fs::path(args.get("data")) / (split + ".bin");
  if (!fs::exists(shard)) throw std::runtime_error(shard.string() + " not found");
  ktl::apply_thread_policy(int(args.get_int("num-threads", 0)));
  const torch::Device device = ktl::resolve_device(args.get("device", "auto"));

  // --dtype: the engine's forward in that compute format (fp32, bf16 or int8 weights: what
  // generate and serve run); otherwise the training module, under --bf16 autocast.
  const std::string dtype = args.get("dtype", "");
  ktl::LoadedCheckpoint ck;
  ktl::LoadedEngineModel em;
  std::string why;
  ktl::Precision precision{};
  if (dtype.empty()) {
    ck = ktl::load_checkpoint_merging_lora(args.get("model"), device);
    ktl::TrainingConfig pc;  // only for the precision choice
    pc.bf16 = args.get("bf16", "auto");
    if (pc.bf16 != "auto" && pc.bf16 != "true" && pc.bf16 != "false")
      throw UsageError("--bf16 must be auto, true or false");
    precision = ktl::choose_precision(pc, device, &why);
  } else {
    if (args.has("bf16")) throw UsageError("--bf16 is for the training path; give --dtype bf16");
    ktl::WeightDtype wd;
    try {
      wd = ktl::engine_dtype_for(dtype);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
    em = ktl::load_engine_model(args.get("model"), wd);
    if (device != torch::kCPU) em.model->use_torch_ops(device);  // int8 runs as bf16 there
    ck.config = em.config;
    ck.tokenizer = em.tokenizer;
    ck.meta = ktl::read_checkpoint_meta(args.get("model"));
    why = std::string("engine, ") + ktl::to_string(em.model->dtype()) + " weights" +
          (em.model->torch_ops() ? " (torch ops on " + device.str() + ")" : "");
  }
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

  ktl::EvalBatches batches(ktl::open_token_shard(shard.string()), batch, seq, max_batches);
  const int64_t chars = batches.count_target_chars(*ck.tokenizer);
  ktl::EvalResult r;
  if (dtype.empty()) {
    r = ktl::evaluate(*ck.model, batches, chars, precision, device);
  } else {
    // The training path's formulas (core/train/evaluation.cpp) over the engine's sums.
    double nats = 0;
    for (int64_t i = 0; i < batches.num_batches(); ++i) {
      const auto s = ktl::engine_window_nll(*em.model, batches.batch(i));
      nats += s.nats;
      r.tokens += s.tokens;
    }
    r.chars = chars;
    r.loss = r.tokens > 0 ? nats / double(r.tokens) : 0.0;
    r.ppl = std::exp(r.loss);
    r.bpc = chars > 0 ? nats / double(chars) / std::log(2.0) : 0.0;
  }

  // --teacher: how well this model (a draft) predicts the teacher on the same batches.
  std::optional<ktl::DraftAgreement> agree;
  if (args.has("teacher")) {
    if (!dtype.empty()) throw UsageError("--teacher runs on the training path: drop --dtype");
    ktl::LoadedCheckpoint teacher = ktl::load_checkpoint(args.get("teacher"), device);
    if (teacher.tokenizer->model_bytes() != ck.tokenizer->model_bytes())
      throw std::runtime_error(args.get("teacher") + " has another tokenizer than " +
                               args.get("model") + ": a draft must share its teacher's");
    agree = ktl::evaluate_draft_agreement(*ck.model, *teacher.model, batches, precision, device);
  }

  if (args.has("job-db")) {
    auto sink = ktl::jobs::make_job_sink(args.get("job-db"), args.get_int("job-id", 0));
    sink->metric(split + "/loss", ck.meta.step, r.loss);
    sink->metric(split + "/ppl", ck.meta.step, r.ppl);
    sink->metric(split + "/bpc", ck.meta.step, r.bpc);
    if (agree) {
      sink->metric(split + "/teacher_top1", ck.meta.step, agree->top1);
      sink->metric(split + "/teacher_acceptance", ck.meta.step, agree->acceptance);
      sink->metric(split + "/teacher_kl", ck.meta.step, agree->kl);
    }
    sink->flush();
  }
  std::printf(
      "checkpoint: %s (step %lld)\nsplit: %s (%lld batches x %d x %d; %lld tokens, %lld chars)\n"
      "precision: %s\nloss: %.4f\nperplexity: %.3f\nbits per character: %.4f\n",
      args.get("model").c_str(), (long long)ck.meta.step, split.c_str(),
      (long long)batches.num_batches(), batch, seq, (long long)r.tokens, (long long)r.chars,
      why.c_str(), r.loss, r.ppl, r.bpc);
  if (agree)
    std::printf(
        "teacher: %s\nteacher top-1 agreement: %.4f\nteacher acceptance (1 - TV, T = 1): "
        "%.4f\nKL(teacher || model): %.4f nats/token\n",
        args.get("teacher").c_str(), agree->top1, agree->acceptance, agree->kl);
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "eval",
    "Evaluate a checkpoint: loss, perplexity and bits per character on a data split (--chat: "
    "assistant loss, chrF, ROUGE-L).",
    {{"model", "checkpoint directory", "", false, true},
     {"data", "data directory with <split>.bin (--chat: chat data or a chat split directory)", ""},
     {"task", "instead: multiple-choice accuracy by likelihood: nsmc-sentiment, kornli or mc", ""},
     {"task-data",
      "--task: its JSONL (default for the built-in tasks: $KTL_TASK_DATA, else "
      "../shared/data/ko)",
      ""},
     {"shots", "--task: solved examples before each one", "0"},
     {"max-examples", "--task: the first N examples (0 = all)", "0"},
     {"json", "--task: one JSON line {task, n, acc, acc_norm, shots}", "", true},
     {"chat", "chat evaluation: assistant loss, chrF and ROUGE-L on held-out conversations", "",
      true},
     {"format", "--chat: chat data format (auto, openai, sharegpt, alpaca, tsv)", "auto"},
     {"val-fraction", "--chat: validation share of the prompt/answer groups, as in sft", "0.05"},
     {"test-fraction", "--chat: test share of the prompt/answer groups, as in sft", "0.05"},
     {"split-seed", "--chat: seed of the train/val/test hash, as in sft and chat-data", "1234"},
     {"seed", "--task: which solved examples", "1234"},
     {"answers", "--chat: held-out prompts answered greedily and scored", "50"},
     {"show", "--chat: answers printed", "5"},
     {"max-new-tokens", "--chat: answer length limit", "64"},
     {"split", "test, val or train (--chat: also all)", "test"},
     {"max-batches", "batches of the fixed subset (from the start of the split)", "50"},
     {"batch-size", "sequences per batch (--task: 16)", "8"},
     {"max-seq-length", "tokens per sequence", "min(256, model)"},
     {"bf16", "auto, true or false (the training path)", "auto"},
     {"dtype",
      "score through the serving engine instead: fp32, bf16 or int8 weights (auto: what "
      "generate and serve run, int8); none = the training module",
      ""},
     {"device", "auto, cpu, cuda or mps", "auto"},
     ktl::cli::kernels_flag(),
     {"teacher",
      "also compare with this teacher checkpoint (a draft's): top-1 agreement, acceptance "
      "(1 - TV) and KL on the same batches",
      ""},
     {"num-threads", "threads (0 = every core)", "0"},
     {"job-db", "job database (set by the training daemon)"},
     {"job-id", "job id in --job-db"}},
    run_eval});

}  // namespace
