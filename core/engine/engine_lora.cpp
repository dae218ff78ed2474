#include "core/engine/engine_lora.h"

#include <torch/torch.h>

#include <map>
#include <stdexcept>

namespace ktl {

namespace {

// The fused linear's parts: which targets it holds, in output order.
FusedLora fuse_lora(const LoraAdapter& a, const ModelConfig& base, int layer,
                    const std::vector<LoraTarget>& targets, torch::Device device) {
  FusedLora f;
  std::vector<torch::Tensor> As;
  int64_t col = 0;
  const float scale = static_cast<float>(a.config.scale());
  for (LoraTarget t : targets) {
    const int64_t out = lora_target_shape(base, t).first;
    const LoraWeights& w = a.at(layer, t);
    if (w.defined()) {
      As.push_back(w.A.to(torch::kFloat32));
      f.parts.push_back({col, (w.B.to(torch::kFloat32) * scale).to(device).contiguous()});
    }
    col += out;
  }
  if (!As.empty()) f.A = torch::cat(As, 0).to(device).contiguous();  // [k r, in]
  return f;
}

}  // namespace

void FusedLora::add_to(const torch::Tensor& x, torch::Tensor& y) const {
  const int64_t r = A.size(0) / static_cast<int64_t>(parts.size());
  auto xa = torch::mm(x, A.t());  // [n, k r]
  for (size_t j = 0; j < parts.size(); ++j) {
    const Part& p = parts[j];
    auto cols = y.narrow(1, p.out_begin, p.B.size(0));  // [n, out_part], row stride = y's
    cols.addmm_(xa.narrow(1, static_cast<int64_t>(j) * r, r), p.B.t());
  }
}

EngineLora::EngineLora(const LoraAdapter& a, const ModelConfig& base, torch::Device device)
    : config_(a.config) {
  if (static_cast<int>(a.layers.size()) != base.num_layers)
    throw std::invalid_argument("the adapter has " + std::to_string(a.layers.size()) +
                                " layers, the base model " + std::to_string(base.num_layers));
  torch::NoGradGuard no_grad;
  for (int i = 0; i < base.num_layers; ++i) {
    for (LoraTarget t : kAllLoraTargets) {
      const LoraWeights& w = a.at(i, t);
      if (!w.defined()) continue;
      const auto [out, in] = lora_target_shape(base, t);
      const int64_t r = config_.rank;
      if (w.A.sizes() != torch::IntArrayRef{r, in} || w.B.sizes() != torch::IntArrayRef{out, r})
        throw std::invalid_argument("adapter layer " + std::to_string(i) + " " +
                                    std::string(lora_target_module(t)) +
                                    ": shapes do not fit the base model");
    }
    Layer l;
    l.qkv = fuse_lora(a, base, i, {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV}, device);
    l.o = fuse_lora(a, base, i, {LoraTarget::kO}, device);
    l.gate_up = fuse_lora(a, base, i, {LoraTarget::kGate, LoraTarget::kUp}, device);
    l.down = fuse_lora(a, base, i, {LoraTarget::kDown}, device);
    layers_.push_back(std::move(l));
  }
}

int64_t EngineLora::bytes() const {
  int64_t n = 0;
  for (const auto& l : layers_) {
    for (const FusedLora* f : {&l.qkv, &l.o, &l.gate_up, &l.down}) {
      if (!f->defined()) continue;
      n += f->A.numel();
      for (const auto& p : f->parts) n += p.B.numel();
    }
  }
  return n * static_cast<int64_t>(sizeof(float));
}

std::vector<LoraRowGroup> group_lora_rows(const std::vector<const EngineLora*>& row_lora,
                                          torch::Device device) {
  std::map<const EngineLora*, std::vector<int64_t>> rows;  // adapter -> its rows, ascending
  std::vector<const EngineLora*> order;                    // first appearance
  for (size_t i = 0; i < row_lora.size(); ++i) {
    if (!row_lora[i]) continue;
    auto& v = rows[row_lora[i]];
    if (v.empty()) order.push_back(row_lora[i]);
    v.push_back(static_cast<int64_t>(i));
  }
  std::vector<LoraRowGroup> out;
  for (const EngineLora* l : order) {
    const auto& v = rows[l];
    LoraRowGroup g;
    g.lora = l;
    g.begin = v.front();
    g.count = static_cast<int64_t>(v.size());
    if (v.back() - v.front() + 1 != g.count)  // not one run: gather / scatter
      g.index = torch::tensor(v, torch::kLong).to(device);
    out.push_back(std::move(g));
  }
  return out;
}

namespace {

void apply_group(const LoraRowGroup& g, const FusedLora& f, const torch::Tensor& x,
                 torch::Tensor& y) {
  if (!f.defined()) return;
  if (!g.index.defined()) {
    auto yg = y.narrow(0, g.begin, g.count);  // a view: adds in place
    f.add_to(x.narrow(0, g.begin, g.count), yg);
    return;
  }
  auto d = torch::zeros({g.count, y.size(1)}, y.options());  // [n, out]
  f.add_to(x.index_select(0, g.index), d);
  y.index_add_(0, g.index, d);
}

}  // namespace

void apply_lora(const std::vector<LoraRowGroup>& groups, int layer,
                FusedLora EngineLora::Layer::*which, const torch::Tensor& x, torch::Tensor& y) {
  // Serial: running the groups side by side on the engine's threads (at::parallel_for) measured
  // slower here (2 shared vCPUs: a parallel region waits for its slowest, preempted thread).
  for (const LoraRowGroup& g : groups) apply_group(g, g.lora->layer(layer).*which, x, y);
}

}  // namespace ktl
