// ktl merge-lora: folds a LoRA adapter into its base and writes an ordinary checkpoint (loads in
// the engine, export, eval, Hugging Face); see docs/training-guide.md, "LoRA".
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "core/adapters/lora_adapter.h"
#include "core/adapters/lora_checkpoint.h"
#include "core/model/checkpoint.h"
#include "core/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

int run_merge_lora(const Args& args) {
  const std::string adapter = args.get("adapter"), out = args.get("output-dir");
  if (out.empty()) throw UsageError("missing required flag --output-dir");
  const std::string dtype = args.get("dtype", "fp32");
  if (dtype != "fp32")
    throw UsageError("--dtype " + dtype +
                     ": checkpoints store fp32 weights (`ktl export` writes bf16/int8 forms)");
  if (!fs::is_directory(adapter)) throw UsageError("--adapter " + adapter + ": not a directory");
  if (!fs::exists(fs::path(adapter) / ktl::kAdapterConfigFile))
    throw UsageError("--adapter " + adapter + ": no adapter_config.json (not a LoRA adapter)");
  std::string base = args.get("base");
  if (base.empty()) {
    if (!fs::exists(fs::path(adapter) / ktl::kLoraBaseFile))
      throw UsageError("--adapter " + adapter + " has no " + ktl::kLoraBaseFile +
                       ": give the base checkpoint with --base");
    base = ktl::read_lora_base(adapter).base;
  }
  if (fs::absolute(out).lexically_normal() == fs::absolute(base).lexically_normal() ||
      fs::absolute(out).lexically_normal() == fs::absolute(adapter).lexically_normal())
    throw UsageError("--output-dir must differ from the base and the adapter");
  const bool verify = !args.get_bool("no-verify");
  // Base verified, its sha256 checked against the adapter's lora_base.json when it has one.
  ktl::LoadedCheckpoint ck = ktl::load_lora_checkpoint(adapter, torch::kCPU, verify, base);
  const ktl::LoraAdapter a = ktl::extract_lora(*ck.model);
  ktl::merge_lora(*ck.model);
  ktl::CheckpointMeta meta;
  meta.step = ck.meta.step;
  meta.metrics = ck.meta.metrics;
  meta.extra["merged_lora_adapter"] = fs::absolute(adapter).lexically_normal().string();
  meta.extra["merged_lora_base"] = fs::absolute(base).lexically_normal().string();
  meta.extra["merged_lora_rank"] = std::to_string(a.config.rank);
  ktl::save_checkpoint(out, *ck.model, ck.tokenizer->model_bytes(), meta);
  std::cout << "merged " << adapter << " (r " << a.config.rank << ", " << a.parameter_count()
            << " adapter parameters) into " << base << ": wrote " << out << " ("
            << ck.config.num_parameters() << " parameters, fp32)\n";
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "merge-lora",
    "Fold a LoRA adapter (PEFT layout) into its base model and write an ordinary checkpoint.",
    {{"adapter", "adapter directory (adapter_config.json + adapter_model.safetensors)", "", false,
      true},
     {"base", "base checkpoint (default: the one the adapter's lora_base.json names)", ""},
     {"output-dir", "where the merged checkpoint goes", ""},
     {"dtype", "weights of the merged checkpoint: fp32", "fp32"},
     {"no-verify", "skip the sha256 check of the files (their presence is still checked)", "",
      true}},
    run_merge_lora});

}  // namespace
