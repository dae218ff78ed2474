// ktl info: parameter count and memory of a model config, and what this machine runs it with:
// the CPU's vector features, OpenBLAS's kernel set, the engine's kernels and threads.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "cli/command.h"
#include "core/base/blas_tuning.h"
#include "core/base/cpu_features.h"
#include "core/engine/kernel_threads.h"
#include "core/engine/packed_linear.h"
#include "core/kernels/bf16_gemv.h"
#include "core/kernels/int8_gemm.h"
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
  std::printf("int8 kernels   %s; prefill: %s\n", ktl::to_string(ktl::Int8Kernels::kBest),
              ktl::int8_prefill_path());
  std::printf("gemv kernels   %s (fp32/bf16 decode); int8 quantizer %s\n",
              ktl::to_string(ktl::Bf16Kernels::kBest), ktl::int8_quantizer());
  // ktl's own kernels (at::parallel_for compiled into ktl): do they get the threads asked for?
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(cores);
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  std::printf("engine threads %d of %d asked (OpenMP spin count %s)\n",
              ktl::kernel_parallel_threads(), cores, spin ? spin : "unset");
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "info",
    "Print a model config's parameter count, memory and FLOPs, the CPU features, BLAS core and "
    "the engine's kernels and threads.",
    {{"model-config", "model YAML (e.g. configs/model_small.yaml)", "", false, true}},
    run_info});

}  // namespace
