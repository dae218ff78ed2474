// ktl generate: stream a continuation of a prompt from a checkpoint (core/engine/generator.h).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/engine_device.h"
#include "cli/kernels_flag.h"
#include "cli/speculative_flags.h"
#include "cli/verify_flag.h"
#include "core/adapters/lora_checkpoint.h"
#include "core/engine/engine_checkpoint.h"
#include "core/engine/generator.h"
#include "core/scheduling/sampler.h"

namespace {

using ktl::cli::Args;
using ktl::cli::UsageError;

ktl::SamplingParams sampling_from_args(const Args& a) {
  ktl::SamplingParams p;
  p.max_tokens = static_cast<int>(a.get_int("max-tokens", 100));
  p.temperature = static_cast<float>(a.get_double("temperature", 0.8));
  p.top_p = static_cast<float>(a.get_double("top-p", 0.95));
  p.top_k = static_cast<int>(a.get_int("top-k", 0));
  p.min_p = static_cast<float>(a.get_double("min-p", 0.0));
  p.repetition_penalty = static_cast<float>(a.get_double("repetition-penalty", 1.0));
  p.presence_penalty = static_cast<float>(a.get_double("presence-penalty", 0.0));
  p.frequency_penalty = static_cast<float>(a.get_double("frequency-penalty", 0.0));
  if (a.has("seed")) p.seed = static_cast<uint64_t>(a.get_int("seed", 0));
  p.stop = a.get_all("stop");
  p.ignore_eos = a.get_bool("ignore-eos");
  try {
    ktl::Sampler::validate(p);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return p;
}

int run_generate(const Args& a) {
  ktl::cli::check_engine_device(a);
  ktl::cli::check_kernels_flag(a);
  const ktl::SamplingParams p = sampling_from_args(a);
  ktl::EngineConfig cfg;
  cfg.dtype = a.get("dtype", "auto");
  cfg.device = a.get("device", "auto");
  cfg.num_threads = static_cast<int>(a.get_int("threads", 0));
  cfg.kv_cache_mb = static_cast<int>(a.get_int("kv-cache-mb", 256));
  cfg.verify_checksums = !a.get_bool("no-verify");
  cfg.speculative = ktl::cli::speculative_from_args(a);
  // --model may be a LoRA checkpoint (ktl train/sft/dpo with --lora-rank): it runs on the base
  // its lora_base.json names, which must still be the base it was trained on.
  std::string model = a.get("model"), adapter = a.get("adapter", "");
  if (adapter.empty() && ktl::is_lora_checkpoint(model)) {
    adapter = model;
    model = ktl::checked_lora_base(adapter);
  }
  try {  // auto: the serving default, int8 (an fp32 checkpoint is quantized at load)
    cfg.dtype = ktl::to_string(ktl::engine_dtype_for(cfg.dtype));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  auto gen = ktl::Generator::from_pretrained(model, cfg);
  if (!adapter.empty()) {  // a LoRA adapter (PEFT directory) on top of the model
    try {
      gen->engine().load_adapter("adapter", adapter);
    } catch (const std::exception& e) {
      throw std::runtime_error("--adapter " + adapter + ": " + e.what());
    }
    gen->use_adapter("adapter");
  }
  const std::string prompt = a.get("prompt");
  const bool json = a.get_bool("json");
  const bool chat = a.get_bool("chat");
  if (!json && !chat) std::cout << prompt << std::flush;
  auto print = [json](const std::string& piece) {
    if (!json) std::cout << piece << std::flush;
  };
  ktl::GenerationResult res;
  if (chat) {
    std::vector<ktl::ChatMessage> msgs;
    if (a.has("system")) msgs.push_back({"system", a.get("system")});
    msgs.push_back({"user", prompt});
    try {
      res = gen->chat(msgs, p, print);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
  } else {
    if (a.has("system")) throw UsageError("--system needs --chat");
    res = gen->generate(prompt, p, print);
  }
  const double decode_s = (res.total_ms - res.ttft_ms) / 1000.0;
  if (json) {
    // One object on stdout: token ids for comparing with other runtimes (e.g. llama.cpp).
    nlohmann::json j = {{"prompt", prompt},
                        {"text", res.text},
                        {"prompt_ids", res.prompt_token_ids},
                        {"ids", res.token_ids},
                        {"finish", ktl::to_string(res.finish)},
                        {"dtype", cfg.dtype},
                        {"ttft_ms", res.ttft_ms},
                        {"total_ms", res.total_ms}};
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::cout << "\n";
  std::fprintf(
      stderr, "[%d prompt + %d generated tokens, TTFT %.0f ms, %.1f tok/s, finish: %s]\n",
      res.prompt_tokens, res.completion_tokens, res.ttft_ms,
      res.completion_tokens > 1 && decode_s > 0 ? (res.completion_tokens - 1) / decode_s : 0.0,
      ktl::to_string(res.finish));
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "generate",
    "Generate a continuation of a prompt, printing tokens as they come.",
    ktl::cli::with_speculative_flags({{"model", "checkpoint directory (a LoRA checkpoint runs on the base it names)", "", false,
      true},
     {"prompt", "text to continue (--chat: the user message)", "", false, true},
     {"adapter", "LoRA adapter directory (PEFT layout) to run on top of --model", ""},
     {"chat", "answer --prompt as a chat turn with the checkpoint's chat template", "", true},
     {"system", "--chat: system message", ""},
     {"max-tokens", "new tokens at most", "100"},
     {"temperature", "0 = greedy", "0.8"},
     {"top-p", "nucleus sampling mass", "0.95"},
     {"top-k", "keep the k most likely tokens (0 = off)", "0"},
     {"min-p", "drop tokens with p < min_p * p_max (0 = off)", "0"},
     {"repetition-penalty", "HF-style, > 1 discourages repeats", "1"},
     {"presence-penalty", "OpenAI-style, -2..2", "0"},
     {"frequency-penalty", "OpenAI-style, -2..2", "0"},
     {"seed", "sampling seed (same seed, same text)", ""},
     {"stop", "stop string (repeatable); never printed", "", false, false, true},
     {"ignore-eos", "keep generating past </s> (exactly --max-tokens tokens)", "", true},
     {"json", "print one JSON object (text, prompt_ids, ids, finish) instead of streaming", "",
      true},
     {"dtype", "auto | fp32 | bf16 | int8 (weight-only; auto: int8)", "auto"},
     {"threads", "CPU threads (0 = all cores)", "0"},
     ktl::cli::engine_device_flag(),
     ktl::cli::kernels_flag(),
     {"kv-cache-mb", "KV cache budget", "256"},
     ktl::cli::no_verify_flag()}),
    run_generate});

}  // namespace
