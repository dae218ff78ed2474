#include "core/engine/engine_scoring.h"

#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "core/engine/paged_attention.h"

namespace ktl {

EngineNll engine_window_nll(const EngineModel& model, const torch::Tensor& windows) {
  const ModelConfig& cfg = model.config();
  if (windows.dim() != 2 || windows.size(1) < 2)
    throw std::invalid_argument("engine_window_nll: windows must be [b, T+1] with T >= 1");
  const int b = static_cast<int>(windows.size(0));
  const int T = static_cast<int>(windows.size(1) - 1);
  if (T > cfg.max_seq_length) {
    throw std::invalid_argument("engine_window_nll: " + std::to_string(T) +
                                " tokens per window exceed the model's context of " +
                                std::to_string(cfg.max_seq_length));
  }
  if (b == 0) return {};
  constexpr int kBlock = 16;  // the engine's default block size; any size gives the same sums
  const int blocks = (T + kBlock - 1) / kBlock;
  PagedKvPool pool(cfg.num_layers, b * blocks, kBlock, cfg.num_kv_heads, cfg.head_dim(),
                   model.device());
  const auto ids = windows.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* p = ids.data_ptr<int64_t>();
  std::vector<int> tokens, rows;
  std::vector<int64_t> targets;
  std::vector<AttnSeq> seqs;
  for (int r = 0; r < b; ++r) {
    AttnSeq s{r * T, T, 0, {}};
    for (int k = 0; k < blocks; ++k) s.block_table.push_back(r * blocks + k);
    seqs.push_back(std::move(s));
    for (int t = 0; t < T; ++t) {
      tokens.push_back(static_cast<int>(p[r * (T + 1) + t]));
      targets.push_back(p[r * (T + 1) + t + 1]);
      rows.push_back(r * T + t);
    }
  }
  c10::InferenceMode guard;
  const auto logits = model.forward(tokens, seqs, pool, rows);  // [b T, V] fp32, host
  const auto nll = torch::nn::functional::cross_entropy(
      logits, torch::tensor(targets, torch::kLong),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  return {nll.item<double>(), static_cast<int64_t>(targets.size())};
}

}  // namespace ktl
