// ktl_lora_fixture: a test helper (not part of ktl) that makes a LoRA adapter with a non-zero B
// for a base checkpoint, so the llama.cpp parity test has an adapter that changes the output
// without training one:
//   ktl_lora_fixture BASE_DIR ADAPTER_DIR MERGED_DIR [RANK] [SEED] [B_STD]
// writes ADAPTER_DIR in the PEFT layout (core/adapters: attach_lora, then B drawn from
// N(0, B_STD^2), save_peft_adapter) and MERGED_DIR, the base with that adapter folded into its
// weights (merge_lora, save_checkpoint): the reference the served or llama.cpp-applied adapter
// must reproduce. alpha = 2 * rank, every projection targeted.
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "core/adapters/lora_adapter.h"
#include "core/model/checkpoint.h"
#include "core/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s BASE_DIR ADAPTER_DIR MERGED_DIR [RANK] [SEED] [B_STD]\n",
                 argv[0]);
    return 2;
  }
  try {
    const std::string base = argv[1], adapter_dir = argv[2], merged_dir = argv[3];
    const int rank = argc > 4 ? std::stoi(argv[4]) : 8;
    const uint64_t seed = argc > 5 ? std::stoull(argv[5]) : 1;
    const double b_std = argc > 6 ? std::stod(argv[6]) : 0.05;
    auto ck = ktl::load_checkpoint(base);
    ktl::LoraConfig cfg;
    cfg.rank = rank;
    cfg.alpha = 2.0 * rank;
    cfg.dropout = 0;
    cfg.base_model = base;
    ktl::attach_lora(*ck.model, cfg, seed);
    {
      torch::NoGradGuard no_grad;
      torch::manual_seed(seed + 1000);
      for (size_t i = 0; i < ck.model->num_blocks(); ++i)
        for (auto t : cfg.targets) {
          auto& b = ktl::lora_projection(*ck.model->block(i), t)->lora_B;  // [out, r]
          b.copy_(torch::randn_like(b) * b_std);
        }
    }
    auto adapter = ktl::extract_lora(*ck.model);
    adapter.config.base_model = base;  // the exporter finds the base through it
    ktl::save_peft_adapter(adapter_dir, adapter);
    ktl::merge_lora(*ck.model);
    ktl::save_checkpoint(merged_dir, *ck.model, ck.tokenizer->model_bytes(), ktl::CheckpointMeta{});
    std::printf("{\"rank\": %d, \"alpha\": %g, \"layers\": %zu}\n", rank, cfg.alpha,
                ck.model->num_blocks());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ktl_lora_fixture: %s\n", e.what());
    return 1;
  }
}
