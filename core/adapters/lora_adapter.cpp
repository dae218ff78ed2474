#include "core/adapters/lora_adapter.h"

#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
#include "core/safetensors/safetensors.h"

namespace ktl {

namespace fs = std::filesystem;

int64_t LoraAdapter::parameter_count() const {
  int64_t n = 0;
  for (const auto& layer : layers)
    for (const auto& w : layer)
      if (w.defined()) n += w.A.numel() + w.B.numel();
  return n;
}

int64_t LoraAdapter::bytes() const {
  return parameter_count() * 4;
}

Projection& lora_projection(BlockImpl& b, LoraTarget t) {
  switch (t) {
    case LoraTarget::kQ:
      return b.self_attn->q_proj;
    case LoraTarget::kK:
      return b.self_attn->k_proj;
    case LoraTarget::kV:
      return b.self_attn->v_proj;
    case LoraTarget::kO:
      return b.self_attn->o_proj;
    case LoraTarget::kGate:
      return b.mlp->gate_proj;
    case LoraTarget::kUp:
      return b.mlp->up_proj;
    case LoraTarget::kDown:
      return b.mlp->down_proj;
  }
  throw std::logic_error("bad LoRA target");
}

namespace {

// checkpoint.h's mapping, less int8: adapters are floating point.
torch::ScalarType float_type(const StTensorInfo& info, const std::string& path) {
  if (info.dtype == StDtype::I8)
    throw std::runtime_error(path + ": tensor '" + info.name +
                             "' has dtype I8 (expected F32, F16 or BF16)");
  return torch_dtype_of(info, path);
}

void freeze_base(TransformerImpl& model) {
  for (auto& p : model.named_parameters()) p.value().set_requires_grad(is_lora_parameter(p.key()));
}

}  // namespace

LoraAdapter load_peft_adapter(const std::string& dir, const ModelConfig& base) {
  const fs::path cfg_path = fs::path(dir) / kAdapterConfigFile;
  const fs::path w_path = fs::path(dir) / kAdapterWeightsFile;
  if (!fs::exists(cfg_path))
    throw std::runtime_error(dir + ": no " + kAdapterConfigFile +
                             " (not a LoRA adapter directory)");
  LoraAdapter a;
  try {
    a.config = lora_config_from_peft_json(read_file(cfg_path));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(cfg_path.string() + ": " + e.what());
  }
  auto file = SafetensorsFile::open(w_path.string());
  a.layers.resize(base.num_layers);
  const int64_t r = a.config.rank;
  for (const auto& info : file.tensors()) {
    auto key = parse_peft_tensor_name(info.name);
    if (!key)
      throw std::runtime_error(w_path.string() + ": tensor '" + info.name +
                               "' is not a LoRA weight of a Llama projection");
    if (key->layer >= base.num_layers)
      throw std::runtime_error(w_path.string() + ": tensor '" + info.name + "' names layer " +
                               std::to_string(key->layer) + " of a " +
                               std::to_string(base.num_layers) + "-layer model");
    if (!a.config.targets_has(key->target))
      throw std::runtime_error(w_path.string() + ": tensor '" + info.name +
                               "' is for a module not in target_modules");
    const auto [out, in] = lora_target_shape(base, key->target);
    const std::vector<int64_t> want =
        key->is_b ? std::vector<int64_t>{out, r} : std::vector<int64_t>{r, in};
    if (info.shape != want)
      throw std::runtime_error(w_path.string() + ": tensor '" + info.name +
                               "' has the wrong shape for r = " + std::to_string(r) +
                               " on this base model");
    // copy = true: own the bytes (the file is unmapped on return), in one copy whatever the dtype.
    auto t = torch::from_blob(const_cast<void*>(file.data(info)), want,
                              torch::TensorOptions().dtype(float_type(info, w_path.string())))
                 .to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
    auto& w = a.layers[key->layer][static_cast<int>(key->target)];
    (key->is_b ? w.B : w.A) = t;
  }
  for (int i = 0; i < base.num_layers; ++i) {
    for (auto t : a.config.targets) {
      const auto& w = a.layers[i][static_cast<int>(t)];
      for (bool b : {false, true}) {
        if (!(b ? w.B : w.A).defined())
          throw std::runtime_error(w_path.string() + ": tensor '" + peft_tensor_name({i, t, b}) +
                                   "' is missing");
      }
    }
  }
  return a;
}

void save_peft_adapter(const std::string& dir, const LoraAdapter& a) {
  fs::create_directories(dir);
  std::vector<torch::Tensor> keep;
  std::vector<StTensorView> views;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    for (auto t : kAllLoraTargets) {
      const auto& w = a.layers[i][static_cast<int>(t)];
      if (!w.defined()) continue;
      for (bool b : {false, true}) {
        auto x = (b ? w.B : w.A).detach().to(torch::kCPU, torch::kFloat32).contiguous();
        keep.push_back(x);
        views.push_back({peft_tensor_name({static_cast<int>(i), t, b}), StDtype::F32,
                         std::vector<int64_t>(x.sizes().begin(), x.sizes().end()), x.data_ptr(),
                         static_cast<size_t>(x.numel()) * sizeof(float)});
      }
    }
  }
  write_safetensors((fs::path(dir) / kAdapterWeightsFile).string(), views, {{"format", "pt"}});
  write_file_atomic(fs::path(dir) / kAdapterConfigFile, lora_config_to_peft_json(a.config));
}

void attach_lora(TransformerImpl& model, const LoraConfig& c, uint64_t seed) {
  c.validate();
  if (!c.enabled()) throw std::invalid_argument("LoRA rank must be > 0 to attach an adapter");
  if (has_lora(model)) throw std::logic_error("the model already carries a LoRA adapter");
  uint64_t s = seed;
  for (size_t i = 0; i < model.num_blocks(); ++i) {
    for (auto t : c.targets)
      lora_projection(*model.block(i), t)->attach_lora(c.rank, c.scale(), c.dropout, s++);
  }
  freeze_base(model);
}

void attach_lora(TransformerImpl& model, const LoraAdapter& a) {
  if (static_cast<size_t>(a.layers.size()) != model.num_blocks())
    throw std::invalid_argument("the adapter has " + std::to_string(a.layers.size()) +
                                " layers, the model " + std::to_string(model.num_blocks()));
  attach_lora(model, a.config, 0);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < model.num_blocks(); ++i) {
    for (auto t : a.config.targets) {
      auto& p = lora_projection(*model.block(i), t);
      const auto& w = a.at(static_cast<int>(i), t);
      p->lora_A.copy_(w.A);
      p->lora_B.copy_(w.B);
    }
  }
}

bool has_lora(TransformerImpl& model) {
  for (size_t i = 0; i < model.num_blocks(); ++i)
    for (auto t : kAllLoraTargets)
      if (lora_projection(*model.block(i), t)->has_lora()) return true;
  return false;
}

LoraAdapter extract_lora(TransformerImpl& model) {
  LoraAdapter a;
  a.layers.resize(model.num_blocks());
  std::vector<LoraTarget> targets;
  for (size_t i = 0; i < model.num_blocks(); ++i) {
    for (auto t : kAllLoraTargets) {
      auto& p = lora_projection(*model.block(i), t);
      if (!p->has_lora()) continue;
      if (i == 0) {
        targets.push_back(t);
        a.config.rank = static_cast<int>(p->lora_A.size(0));
        a.config.alpha = p->lora_scale * a.config.rank;
        a.config.dropout = p->lora_dropout;
      }
      a.layers[i][static_cast<int>(t)] = {
          p->lora_A.detach().to(torch::kCPU, torch::kFloat32).clone(),
          p->lora_B.detach().to(torch::kCPU, torch::kFloat32).clone()};
    }
  }
  if (targets.empty()) throw std::logic_error("the model carries no LoRA adapter");
  a.config.targets = targets;
  return a;
}

std::vector<std::pair<std::string, torch::Tensor>> lora_named_parameters(TransformerImpl& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : model.named_parameters())
    if (is_lora_parameter(p.key())) out.emplace_back(p.key(), p.value());
  return out;
}

void merge_lora(TransformerImpl& model) {
  for (size_t i = 0; i < model.num_blocks(); ++i)
    for (auto t : kAllLoraTargets) lora_projection(*model.block(i), t)->merge_lora();
  for (auto& p : model.parameters()) p.set_requires_grad(true);
}

int64_t store_frozen_projections(TransformerImpl& model, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  int64_t freed = 0;
  for (size_t i = 0; i < model.num_blocks(); ++i) {
    for (auto t : kAllLoraTargets) {
      auto& w = lora_projection(*model.block(i), t)->weight;  // [out, in]
      if (w.requires_grad() || w.scalar_type() == dtype) continue;
      const int64_t before = w.numel() * int64_t(w.element_size());
      w.set_data(w.to(dtype));
      freed += before - w.numel() * int64_t(w.element_size());
    }
  }
  return freed;
}

LoraOffScope::LoraOffScope(TransformerImpl& model) {
  for (size_t i = 0; i < model.num_blocks(); ++i) {
    for (auto t : kAllLoraTargets) {
      auto& p = lora_projection(*model.block(i), t);
      if (!p->has_lora()) continue;
      saved_.emplace_back(p, p->lora_scale);
      p->lora_scale = 0.0;
    }
  }
}

LoraOffScope::~LoraOffScope() {
  for (auto& [p, scale] : saved_) p->lora_scale = scale;
}

}  // namespace ktl
