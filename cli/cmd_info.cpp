// ktl info: parameter count and memory of a model config (no LibTorch needed), and what this
// machine runs it with: the CPU's vector features and OpenBLAS's kernel set.
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "core/base/blas_tuning.h"
#include "core/base/cpu_features.h"
#include "core/model/model_config.h"

namespace {

int run_info(const ktl::cli::Args& args) {
  auto c = ktl::load_model_config_yaml(args.get("model-config"));
  const double n = static_cast<double>(c.num_parameters());
  const double non_embed =
      n - double(c.vocab_size) * c.hidden_size * (c.tie_word_embeddings ? 1 : 2);
  std::printf("model config   %s\n", args.get("model-config").c_str());
  std::printf(
      "vocab %d, hidden %d, layers %d, heads %d, kv heads %d, ffn %d, ctx %d, head_dim %d\n",
      c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.intermediate_size,
      c.max_seq_length, c.head_dim());
  std::printf("parameters     %lld (%.1fM; %.1fM without embeddings)\n",
              static_cast<long long>(c.num_parameters()), n / 1e6, non_embed / 1e6);
  std::printf("weights        fp32 %.1f MiB, bf16 %.1f MiB, int8 ~%.1f MiB\n", n * 4 / 1048576.0,
              n * 2 / 1048576.0, n / 1048576.0);
  const double kv_per_token = 2.0 * c.num_layers * c.num_kv_heads * c.head_dim() * 4;
  std::printf("KV cache       %.1f KiB/token fp32, %.1f MiB for a full %d-token context\n",
              kv_per_token / 1024, kv_per_token * c.max_seq_length / 1048576.0, c.max_seq_length);
  std::printf("forward FLOPs  %.2f GFLOP/token at full context\n",
              c.flops_per_token(c.max_seq_length) / 1e9);
  const ktl::CpuFeatures cpu = ktl::detect_cpu_features();
  std::printf("CPU            %s family %d model %d: %s\n", cpu.vendor.c_str(), cpu.family,
              cpu.model, ktl::cpu_feature_list(cpu).c_str());
  const ktl::BlasStatus blas = ktl::blas_status();
  std::printf("BLAS core      %s (%s)\n", blas.core.empty() ? "-" : blas.core.c_str(),
              blas.note.c_str());
  if (!blas.config.empty()) std::printf("BLAS config    %s\n", blas.config.c_str());
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "info",
    "Print a model config's parameter count, memory and FLOPs, the CPU features and BLAS core.",
    {{"model-config", "model YAML (e.g. configs/model_small.yaml)", "", false, true}},
    run_info});

}  // namespace
