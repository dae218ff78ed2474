// LoRA adapters as the engine runs them, many in one batch (Punica / S-LoRA style): the base
// projection runs once over every row of a step, then each adapter present in the step adds
// scale * B (A x) to its own rows only.
//
// Layout: the engine fuses q/k/v into one linear and gate/up into another (engine_model.h), so an
// adapter is stored per fused linear: the A's of its targeted parts stacked ([k r, in], one
// matmul for all parts) and one B per part, stored transposed ([r, out_part], the scale folded
// in: the CPU kernel's inner loop runs along contiguous output columns) that adds into its
// columns of the fused output. Weights are fp32 on an fp32 base (a served adapter equals its
// merged checkpoint) and bf16 on a bf16 / int8 base on the CPU (a decode step's adapter work is
// bound by reading their weights: half the bytes, the base's own precision or better).
//
// Rows: group_lora_rows() turns the per-row assignment of a step into one group per adapter,
// once per step (reused by every layer); a group whose rows are contiguous (the engine orders a
// step's sequences by adapter) is a narrow() of the activations, others gather and index_add.
//
// Two ways to add the products: apply_lora() with torch ops (any device; ~16 small ops per group
// and linear), and apply_lora_cpu(), one hand-written fp32 loop nest per linear for the CPU fast
// path (per-row, so a row's result does not depend on the rest of the batch); apply_lora() is
// its naive twin in tests.
//
// Thread-safety: an EngineLora is immutable once built; share it read-only across threads.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "core/adapters/lora_adapter.h"
#include "core/model/model_config.h"

namespace ktl {

// An adapter on one fused linear; undefined when it targets none of the linear's parts.
struct FusedLora {
  torch::Tensor A;  // [k r, in]: the A of each of the k targeted parts, stacked (fp32 or bf16)
  struct Part {
    int64_t out_begin = 0;  // first column of the fused output this part adds to
    torch::Tensor Bt;       // [r, out_part], B transposed, scale folded in
  };
  std::vector<Part> parts;  // in the order of A's row blocks
  bool defined() const { return A.defined(); }
  // y [n, out] += x [n, in] A^T B^T (y may be a row-narrowed view), in x's dtype.
  void add_to(const torch::Tensor& x, torch::Tensor& y) const;
};

class EngineLora {
 public:
  struct Layer {
    FusedLora qkv, o, gate_up, down;
  };
  // Converts `a` (checked against `base`: layer count, shapes) to tensors of `weight_type` (fp32
  // or bf16; scale folded in fp32 first) on `device`.
  EngineLora(const LoraAdapter& a, const ModelConfig& base, torch::Device device,
             torch::ScalarType weight_type = torch::kFloat32);

  const Layer& layer(int i) const { return layers_.at(i); }
  const LoraConfig& config() const { return config_; }
  int64_t bytes() const;  // bytes held

 private:
  LoraConfig config_;
  std::vector<Layer> layers_;
};

// The rows of one adapter in a step.
struct LoraRowGroup {
  const EngineLora* lora = nullptr;
  int64_t begin = 0, count = 0;  // when contiguous: rows [begin, begin + count)
  torch::Tensor index;           // [count] long on the model's device when not contiguous
  std::vector<int64_t> rows;     // [count] the same rows on the host (for apply_lora_cpu)
};
// One group per distinct non-null adapter of `row_lora` (one entry per row; null = base).
std::vector<LoraRowGroup> group_lora_rows(const std::vector<const EngineLora*>& row_lora,
                                          torch::Device device);
// y [N, out] += each group's adapter on `which` linear of layer `layer`, applied to its rows of
// x [N, in].
void apply_lora(const std::vector<LoraRowGroup>& groups, int layer,
                FusedLora EngineLora::Layer::*which, const torch::Tensor& x, torch::Tensor& y);
// The same on the CPU with ktl's own loops: x and y fp32 CPU tensors with contiguous rows (falls
// back to apply_lora() otherwise), fp32 or bf16 weights, fp32 accumulation; agrees with
// apply_lora() to rounding.
void apply_lora_cpu(const std::vector<LoraRowGroup>& groups, int layer,
                    FusedLora EngineLora::Layer::*which, const torch::Tensor& x, torch::Tensor& y);

}  // namespace ktl
