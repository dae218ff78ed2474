#include "core/train/adamw.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "core/train/training_config.h"

namespace ktl {

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> named_params, AdamWOptions opts)
    : opts_(opts) {
  for (auto& [name, p] : named_params) {
    Slot s;
    s.name = name;
    s.param = p;
    s.decay = p.dim() >= 2;
    s.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Contiguous);
    s.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Contiguous);
    slots_.push_back(std::move(s));
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_) {
    auto& g = s.param.mutable_grad();
    if (g.defined()) g.zero_();
  }
}

void AdamW::step(double lr) {
  if (opts_.foreach)
    step_foreach(lr);
  else
    step_per_parameter(lr);
}

void AdamW::step_per_parameter(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1.0 - std::pow(opts_.beta1, double(step_));
  const double bc2 = 1.0 - std::pow(opts_.beta2, double(step_));
  const double step_size = lr / bc1;
  const double bc2_sqrt = std::sqrt(bc2);
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    if (s.decay && opts_.weight_decay != 0) s.param.mul_(1.0 - lr * opts_.weight_decay);
    s.exp_avg.mul_(opts_.beta1).add_(g, 1.0 - opts_.beta1);
    s.exp_avg_sq.mul_(opts_.beta2).addcmul_(g, g, 1.0 - opts_.beta2);
    auto denom = (s.exp_avg_sq.sqrt() / bc2_sqrt).add_(opts_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -step_size);
  }
}

void AdamW::step_foreach(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1.0 - std::pow(opts_.beta1, double(step_));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(opts_.beta2, double(step_)));
  std::vector<torch::Tensor> p, g, m, v, decayed;
  for (auto& s : slots_) {
    if (!s.param.grad().defined()) continue;
    p.push_back(s.param);
    g.push_back(s.param.grad());
    m.push_back(s.exp_avg);
    v.push_back(s.exp_avg_sq);
    if (s.decay) decayed.push_back(s.param);
  }
  if (p.empty()) return;
  if (!decayed.empty() && opts_.weight_decay != 0)
    at::_foreach_mul_(decayed, c10::Scalar(1.0 - lr * opts_.weight_decay));
  at::_foreach_mul_(m, c10::Scalar(opts_.beta1));
  at::_foreach_add_(m, g, c10::Scalar(1.0 - opts_.beta1));
  at::_foreach_mul_(v, c10::Scalar(opts_.beta2));
  at::_foreach_addcmul_(v, g, g, c10::Scalar(1.0 - opts_.beta2));
  auto denom = at::_foreach_sqrt(v);  // one temporary for all parameters
  at::_foreach_div_(denom, c10::Scalar(bc2_sqrt));
  at::_foreach_add_(denom, c10::Scalar(opts_.eps));
  at::_foreach_addcdiv_(p, m, denom, c10::Scalar(-lr / bc1));
}

std::map<std::string, torch::Tensor> AdamW::state_tensors() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& s : slots_) {
    out["exp_avg/" + s.name] = s.exp_avg;
    out["exp_avg_sq/" + s.name] = s.exp_avg_sq;
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& state, int64_t steps_taken) {
  torch::NoGradGuard no_grad;
  for (auto& s : slots_) {
    for (auto* pair : {&s.exp_avg, &s.exp_avg_sq}) {
      const std::string key = (pair == &s.exp_avg ? "exp_avg/" : "exp_avg_sq/") + s.name;
      auto it = state.find(key);
      if (it == state.end()) throw std::runtime_error("optimizer state lacks '" + key + "'");
      if (it->second.sizes() != pair->sizes())
        throw std::runtime_error("optimizer state '" + key + "' has the wrong shape");
      pair->copy_(it->second);
    }
  }
  step_ = steps_taken;
}

bool AdamW::decays(const std::string& name) const {
  for (const auto& s : slots_)
    if (s.name == name) return s.decay;
  throw std::out_of_range("no parameter named '" + name + "'");
}

size_t AdamW::num_decay_params() const {
  size_t n = 0;
  for (const auto& s : slots_) n += s.decay ? 1 : 0;
  return n;
}

AdamWOptions adamw_options(const TrainingConfig& c, const torch::Device& device) {
  AdamWOptions o;
  o.beta1 = c.adam_beta1;
  o.beta2 = c.adam_beta2;
  o.eps = c.adam_eps;
  o.weight_decay = c.weight_decay;
  o.foreach = !device.is_cpu();
  return o;
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(torch::kFloat64));
  if (norms.empty()) return 0.0;
  const double total = torch::stack(norms).norm(2).item<double>();
  if (max_norm > 0 && std::isfinite(total) && total > max_norm) {
    const double coef = max_norm / (total + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(coef);
  }
  return total;
}

}  // namespace ktl
