#include "core/train/lora_training.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/base/runtime_tuning.h"

namespace ktl {

namespace fs = std::filesystem;

namespace {

std::string targets_text(const std::vector<LoraTarget>& ts) {
  std::string s;
  for (auto t : ts) s += (s.empty() ? "" : ",") + std::string(lora_target_short_name(t));
  return s;
}

// A resumed adapter must be the one the (possibly overridden) config asks for.
void check_resumed_adapter(const std::string& dir, const TrainingConfig& c) {
  const LoraConfig have = lora_config_from_peft_json(read_file(fs::path(dir) / kAdapterConfigFile));
  const LoraConfig want = lora_config_of(c);
  if (have.rank != want.rank || have.targets != want.targets || have.alpha != want.alpha)
    throw std::invalid_argument(
        dir + " holds a LoRA adapter of rank " + std::to_string(have.rank) + ", alpha " +
        std::to_string(have.alpha) + " on " + targets_text(have.targets) +
        "; this run asks for rank " + std::to_string(want.rank) + ", alpha " +
        std::to_string(want.alpha) + " on " + targets_text(want.targets) +
        " (resume without changing --lora-rank, --lora-alpha or --lora-targets)");
}

}  // namespace

TrainingStart load_training_start(const std::string& init_from, const std::string& resume_from,
                                  const TrainingConfig& c, const torch::Device& device) {
  TrainingStart s;
  const bool lora = c.lora_rank > 0;
  if (!resume_from.empty()) {
    if (is_lora_checkpoint(resume_from)) {
      if (!lora)
        throw std::invalid_argument(
            resume_from +
            " is a LoRA checkpoint but lora_rank is 0: resume it with its own "
            "training_config.yaml (drop --lora-rank 0)");
      check_resumed_adapter(resume_from, c);
      s.lora_base = read_lora_base(resume_from);
      s.ck = load_lora_checkpoint(resume_from, device);  // checks the base's sha256
      s.resumed_lora = true;
      return s;
    }
    if (lora)
      throw std::invalid_argument(resume_from +
                                  " is a full checkpoint, not a LoRA one: to train an adapter on "
                                  "it start a new run with --init-from " +
                                  resume_from);
    s.ck = load_checkpoint(resume_from, device);
    return s;
  }
  if (init_from.empty()) {
    if (lora)
      throw std::invalid_argument(
          "LoRA trains an adapter on a base model: give the base checkpoint with --init-from");
    throw std::invalid_argument("no checkpoint to start from (--init-from or --resume-from)");
  }
  if (is_lora_checkpoint(init_from)) {
    if (lora)
      throw std::invalid_argument(
          init_from +
          " is a LoRA checkpoint: a new adapter needs a full base; write one with "
          "`ktl merge-lora --adapter " +
          init_from +
          " --output-dir DIR` and "
          "--init-from DIR");
    s.ck = load_checkpoint_merging_lora(init_from, device);  // full training of base + adapter
    return s;
  }
  s.ck = load_checkpoint(init_from, device);
  if (lora) s.lora_base = lora_base_of(init_from);
  return s;
}

void attach_training_lora(TransformerImpl& model, const TrainingConfig& c) {
  if (c.lora_rank <= 0 || has_lora(model)) return;
  attach_lora(model, lora_config_of(c), uint64_t(c.seed));
}

std::string store_lora_base_in_precision(TransformerImpl& model, Precision precision) {
  if (precision != Precision::kBf16 || !has_lora(model)) return "";
  const int64_t freed = store_frozen_projections(model, torch::kBFloat16);
  if (freed == 0) return "";
  release_free_heap();  // the fp32 copies' pages would otherwise stay resident
  char buf[160];
  std::snprintf(buf, sizeof buf, "LoRA: frozen base projections stored in bf16 (%.0f MB freed)",
                double(freed) / 1e6);
  return buf;
}

std::string describe_lora(TransformerImpl& model, const TrainingConfig& c,
                          const LoraBaseRef& base) {
  int64_t trainable = 0, total = 0;
  for (const auto& p : model.parameters()) {
    total += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  const LoraConfig l = lora_config_of(c);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "LoRA: r %d, alpha %g (scale %g), dropout %g, targets %s: %lld trainable of %lld "
                "parameters (%.3f%%); base %s (frozen)",
                l.rank, l.alpha, l.scale(), l.dropout, targets_text(l.targets).c_str(),
                (long long)trainable, (long long)total,
                total > 0 ? 100.0 * double(trainable) / double(total) : 0.0, base.base.c_str());
  return buf;
}

}  // namespace ktl
