// A bias-free linear projection (y = x W^T) that can carry a LoRA adapter (Hu et al. 2021):
// y = x W^T + scale * dropout(x) A^T B^T, with A [r, in] and B [out, r]. The attention and MLP
// projections are Projections so LoRA can be attached to any of them without another module
// tree; `weight` keeps torch::nn::Linear's name, so checkpoints and callers see no change.
//
// Parameter names: "weight", and with an adapter "lora_A" and "lora_B" (core/adapters maps them
// to PEFT's "…q_proj.lora_A.weight"). Thread-safety: as any module, one forward at a time.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>

namespace ktl {

class ProjectionImpl : public torch::nn::Module {
 public:
  ProjectionImpl(int64_t in_features, int64_t out_features);
  torch::Tensor forward(const torch::Tensor& x);  // [..., in] -> [..., out]

  // Adds a rank-r adapter: A drawn as PEFT draws it (Kaiming-uniform, a = sqrt(5)) from `seed`,
  // B zero, so the output is unchanged until B trains. Throws if one is already attached.
  void attach_lora(int64_t rank, double scale, double dropout, uint64_t seed);
  // Folds scale * B A into `weight` and removes the adapter (no-op without one).
  void merge_lora();
  // Removes the adapter without merging it.
  void detach_lora();
  bool has_lora() const { return lora_A.defined(); }

  int64_t in_features, out_features;
  torch::Tensor weight;          // [out, in]
  torch::Tensor lora_A, lora_B;  // [r, in], [out, r]; undefined without an adapter
  double lora_scale = 0.0;       // alpha / r; 0 switches the adapter off (forward skips it)
  double lora_dropout = 0.0;     // applied to the adapter's input in training mode only
};
TORCH_MODULE(Projection);

}  // namespace ktl
