#include "core/engine/engine_lora.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>

#include "core/base/cpu_features.h"
#include "core/engine/kernel_threads.h"

namespace ktl {

namespace {

// The fused linear's parts: which targets it holds, in output order.
FusedLora fuse_lora(const LoraAdapter& a, const ModelConfig& base, int layer,
                    const std::vector<LoraTarget>& targets, torch::Device device,
                    torch::ScalarType type) {
  FusedLora f;
  std::vector<torch::Tensor> As;
  int64_t col = 0;
  const float scale = static_cast<float>(a.config.scale());
  for (LoraTarget t : targets) {
    const int64_t out = lora_target_shape(base, t).first;
    const LoraWeights& w = a.at(layer, t);
    if (w.defined()) {
      As.push_back(w.A.to(torch::kFloat32));
      auto Bt = (w.B.to(torch::kFloat32) * scale).t().to(type);  // [r, out_part]
      f.parts.push_back({col, Bt.to(device).contiguous()});
    }
    col += out;
  }
  if (!As.empty()) f.A = torch::cat(As, 0).to(type).to(device).contiguous();  // [k r, in]
  return f;
}

}  // namespace

void FusedLora::add_to(const torch::Tensor& x, torch::Tensor& y) const {
  const int64_t r = A.size(0) / static_cast<int64_t>(parts.size());
  auto xa = torch::mm(x, A.to(x.scalar_type()).t());  // [n, k r]
  for (size_t j = 0; j < parts.size(); ++j) {
    const Part& p = parts[j];
    auto cols = y.narrow(1, p.out_begin, p.Bt.size(1));  // [n, out_part], row stride = y's
    cols.addmm_(xa.narrow(1, static_cast<int64_t>(j) * r, r), p.Bt.to(x.scalar_type()));
  }
}

EngineLora::EngineLora(const LoraAdapter& a, const ModelConfig& base, torch::Device device,
                       torch::ScalarType weight_type)
    : config_(a.config) {
  if (weight_type != torch::kFloat32 && weight_type != torch::kBFloat16)
    throw std::invalid_argument("adapter weights are fp32 or bf16");
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
    auto fuse = [&](const std::vector<LoraTarget>& targets) {
      return fuse_lora(a, base, i, targets, device, weight_type);
    };
    l.qkv = fuse({LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV});
    l.o = fuse({LoraTarget::kO});
    l.gate_up = fuse({LoraTarget::kGate, LoraTarget::kUp});
    l.down = fuse({LoraTarget::kDown});
    layers_.push_back(std::move(l));
  }
}

int64_t EngineLora::bytes() const {
  int64_t n = 0;
  for (const auto& l : layers_) {
    for (const FusedLora* f : {&l.qkv, &l.o, &l.gate_up, &l.down}) {
      if (!f->defined()) continue;
      n += f->A.numel() * f->A.element_size();
      for (const auto& p : f->parts) n += p.Bt.numel() * p.Bt.element_size();
    }
  }
  return n;
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
    g.rows = v;
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

// ---- The CPU kernel ----

namespace {

// One row group through one fused linear, raw fp32 pointers.
struct GroupJob {
  const float* x;        // [N, in] rows, row stride xs
  float* y;              // [N, out] rows, row stride ys
  int64_t xs, ys, in;
  const int64_t* rows;   // [n] the group's rows
  int64_t n;
  const FusedLora* f;
};

constexpr int kLanes = 32;  // independent partial sums: vectorisable without reassociation
constexpr int kCols = 64;   // output columns per tile of the B stage (a few vector registers)

inline float wide(float v) { return v; }
inline float wide(uint16_t bf16) {  // bf16 -> fp32: the top half of the fp32 bits
  const uint32_t bits = uint32_t(bf16) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// x . a over `in`, kLanes partial sums (in a fixed order: a row's result never depends on the
// batch).
template <class W>
__attribute__((always_inline)) inline float dot(const float* x, const W* a, int64_t in) {
  float s[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= in; i += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += x[i + k] * wide(a[i + k]);
  float t = 0;
  for (; i < in; ++i) t += x[i] * wide(a[i]);
  for (int k = 0; k < kLanes; ++k) t += s[k];
  return t;
}

// low [n, k r] = x_rows A^T (each A row read once for all n rows, then from L1), then for each
// part y_rows[:, part] += low_part [n, r] Bt [r, out_part], kCols columns at a time (the Bt
// tile stays in L1 across the rows).
template <class W>
__attribute__((always_inline)) inline void group_body(const GroupJob& j, float* low) {
  const FusedLora& f = *j.f;
  const int64_t kr = f.A.size(0), in = j.in;
  const W* A = static_cast<const W*>(f.A.data_ptr());
  for (int64_t a = 0; a < kr; ++a)
    for (int64_t i = 0; i < j.n; ++i) low[i * kr + a] = dot(j.x + j.rows[i] * j.xs, A + a * in, in);
  const int64_t r = kr / static_cast<int64_t>(f.parts.size());
  for (size_t p = 0; p < f.parts.size(); ++p) {
    const W* Bt = static_cast<const W*>(f.parts[p].Bt.data_ptr());
    const int64_t out = f.parts[p].Bt.size(1), col0 = f.parts[p].out_begin;
    for (int64_t c = 0; c < out; c += kCols) {
      const int64_t w = std::min<int64_t>(kCols, out - c);
      for (int64_t i = 0; i < j.n; ++i) {
        float* yr = j.y + j.rows[i] * j.ys + col0 + c;
        const float* l = low + i * kr + static_cast<int64_t>(p) * r;
        float acc[kCols];
        if (w == kCols) {  // the common case: fixed trip counts vectorise fully
          for (int k = 0; k < kCols; ++k) acc[k] = yr[k];
          for (int64_t t = 0; t < r; ++t)
            for (int k = 0; k < kCols; ++k) acc[k] += l[t] * wide(Bt[t * out + c + k]);
          for (int k = 0; k < kCols; ++k) yr[k] = acc[k];
        } else {
          for (int64_t k = 0; k < w; ++k) acc[k] = yr[k];
          for (int64_t t = 0; t < r; ++t)
            for (int64_t k = 0; k < w; ++k) acc[k] += l[t] * wide(Bt[t * out + c + k]);
          for (int64_t k = 0; k < w; ++k) yr[k] = acc[k];
        }
      }
    }
  }
}

// The same loops compiled for each instruction set (fp32 and bf16 weights); picked at run time.
#if defined(__x86_64__)
template <class W>
__attribute__((target("avx512f,fma"))) void group_avx512(const GroupJob& j, float* low) {
  group_body<W>(j, low);
}
template <class W>
__attribute__((target("avx2,fma"))) void group_avx2(const GroupJob& j, float* low) {
  group_body<W>(j, low);
}
#endif
template <class W>
void group_plain(const GroupJob& j, float* low) {
  group_body<W>(j, low);
}

using GroupFn = void (*)(const GroupJob&, float*);
template <class W>
GroupFn best_group_fn() {
  static const GroupFn fn = [] {
#if defined(__x86_64__)
    const CpuFeatures c = detect_cpu_features();
    if (c.avx512f && c.fma) return &group_avx512<W>;
    if (c.avx2 && c.fma) return &group_avx2<W>;
#endif
    return &group_plain<W>;
  }();
  return fn;
}

}  // namespace

void apply_lora_cpu(const std::vector<LoraRowGroup>& groups, int layer,
                    FusedLora EngineLora::Layer::*which, const torch::Tensor& x, torch::Tensor& y) {
  const bool fits = x.device().is_cpu() && y.device().is_cpu() &&
                    x.scalar_type() == torch::kFloat32 && y.scalar_type() == torch::kFloat32 &&
                    x.dim() == 2 && y.dim() == 2 && x.stride(1) == 1 && y.stride(1) == 1;
  if (!fits) return apply_lora(groups, layer, which, x, y);
  std::vector<GroupJob> jobs;
  int64_t macs = 0, max_low = 0;
  for (const LoraRowGroup& g : groups) {
    const FusedLora& f = g.lora->layer(layer).*which;
    if (!f.defined()) continue;
    jobs.push_back({x.data_ptr<float>(), y.data_ptr<float>(), x.stride(0), y.stride(0), x.size(1),
                    g.rows.data(), g.count, &f});
    const int64_t kr = f.A.size(0);
    macs += g.count * kr * (x.size(1) + y.size(1) / 3);  // rough: A, then about a third of B
    max_low = std::max(max_low, g.count * kr);
  }
  if (jobs.empty()) return;
  const int64_t per_job = macs / static_cast<int64_t>(jobs.size());
  // Groups write disjoint rows of y: they run side by side.
  at::parallel_for(0, static_cast<int64_t>(jobs.size()), parallel_grain(per_job),
                   [&](int64_t b, int64_t e) {
                     std::vector<float> low(static_cast<size_t>(max_low));  // [n, k r]
                     for (int64_t i = b; i < e; ++i) {
                       const bool bf16 = jobs[i].f->A.scalar_type() == torch::kBFloat16;
                       (bf16 ? best_group_fn<uint16_t>() : best_group_fn<float>())(jobs[i],
                                                                                   low.data());
                     }
                   });
}

}  // namespace ktl
