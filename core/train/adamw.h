// AdamW (decoupled weight decay, Loshchilov & Hutter) over named parameters, with two groups:
// matrices get weight decay; norms, biases and other 1-D parameters do not. The state is plain
// tensors keyed by parameter name, so it round-trips through safetensors and a resumed run
// continues bit-identically. Same update as torch.optim.AdamW (amsgrad off).
// Thread-safety: not thread-safe; one training loop owns it.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ktl {

struct TrainingConfig;

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // applied to parameters with dim() >= 2 only
  // Multi-tensor update (ATen's _foreach_ ops: a handful of kernels for all parameters instead
  // of six per parameter; what torch.optim.AdamW does on GPUs). Same arithmetic, but it holds
  // one temporary the size of all parameters at once, so the trainer uses it off the CPU only.
  bool foreach = false;
};

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> named_params, AdamWOptions opts);

  // One update with learning rate `lr` using the parameters' .grad (missing grads are skipped).
  // Dispatches on AdamWOptions::foreach; the per-parameter loop is the multi-tensor path's twin.
  void step(double lr);
  void step_per_parameter(double lr);
  void step_foreach(double lr);
  void zero_grad();
  int64_t steps_taken() const { return step_; }

  // State as named tensors: "exp_avg/<name>", "exp_avg_sq/<name>" (fp32, parameter shape).
  std::map<std::string, torch::Tensor> state_tensors() const;
  // Restores what state_tensors() returned; throws std::runtime_error naming a missing or
  // mis-shaped entry.
  void load_state(const std::map<std::string, torch::Tensor>& state, int64_t steps_taken);

  bool decays(const std::string& name) const;  // for tests and logs
  size_t num_decay_params() const;

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, exp_avg, exp_avg_sq;
    bool decay = false;
  };
  std::vector<Slot> slots_;
  AdamWOptions opts_;
  int64_t step_ = 0;
};

// The options a training config asks for (betas, eps, weight decay); the multi-tensor update off
// the CPU only (fewer kernel launches on a GPU; less peak memory on a CPU).
AdamWOptions adamw_options(const TrainingConfig& c, const torch::Device& device);

// Global L2 norm of all gradients (parameters without one are skipped); scales them to
// `max_norm` when above it (0 = never). Returns the norm before clipping (0 with no gradient).
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace ktl
