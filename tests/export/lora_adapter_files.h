// Test helper, torch-free: writes a PEFT LoRA adapter directory (adapter_config.json +
// adapter_model.safetensors with PEFT's tensor names) with seeded random A and B for a Llama
// base of the given shape, and keeps the values for comparisons.
#pragma once

#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/adapters/lora_config.h"
#include "core/base/file_util.h"
#include "core/export/gguf_format.h"
#include "core/safetensors/safetensors.h"

namespace ktl::testing {

struct LoraBaseShape {
  int hidden = 64, heads = 4, kv_heads = 2, ffn = 96, layers = 2;
};

// [out, in] of a projection, written out from the Llama definition (not the exporter's helper).
inline std::pair<int64_t, int64_t> lora_test_shape(const LoraBaseShape& b, LoraTarget t) {
  const int64_t D = b.hidden, Dh = b.hidden / b.heads;
  if (t == LoraTarget::kQ) return {b.heads * Dh, D};
  if (t == LoraTarget::kK || t == LoraTarget::kV) return {b.kv_heads * Dh, D};
  if (t == LoraTarget::kO) return {D, b.heads * Dh};
  if (t == LoraTarget::kDown) return {D, b.ffn};
  return {b.ffn, D};  // gate, up
}

struct LoraTestTensor {
  std::vector<int64_t> shape;  // PyTorch order
  std::vector<float> values;
};

// Writes `dir`; returns PEFT name -> tensor. `skip` leaves one tensor out, `extra` adds one
// (name, shape) more; `dtype` F32, F16 or BF16 stores the values rounded to it (the returned
// values are the rounded ones).
inline std::map<std::string, LoraTestTensor> write_lora_adapter(
    const std::filesystem::path& dir, const LoraConfig& cfg, const LoraBaseShape& base,
    uint32_t seed = 7, const std::string& skip = "",
    const std::pair<std::string, std::vector<int64_t>>& extra = {}, StDtype dtype = StDtype::F32) {
  std::filesystem::create_directories(dir);
  write_file_atomic(dir / kAdapterConfigFile, lora_config_to_peft_json(cfg));
  std::map<std::string, LoraTestTensor> t;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.1f);
  auto fill = [&](const std::string& name, std::vector<int64_t> shape) {
    auto& x = t[name];
    x.shape = shape;
    x.values.resize(size_t(shape[0]) * size_t(shape.size() > 1 ? shape[1] : 1));
    for (auto& v : x.values) v = nd(rng);
  };
  for (int l = 0; l < base.layers; ++l) {
    for (auto target : cfg.targets) {
      const auto [out, in] = lora_test_shape(base, target);
      fill(peft_tensor_name({l, target, false}), {cfg.rank, in});
      fill(peft_tensor_name({l, target, true}), {out, cfg.rank});
    }
  }
  if (!extra.first.empty()) fill(extra.first, extra.second);
  t.erase(skip);
  std::vector<std::vector<uint16_t>> halves;
  halves.reserve(t.size());
  std::vector<StTensorView> views;
  for (auto& [name, x] : t) {
    if (dtype == StDtype::F32) {
      views.push_back({name, dtype, x.shape, x.values.data(), x.values.size() * 4});
      continue;
    }
    auto& h = halves.emplace_back(x.values.size());
    for (size_t i = 0; i < h.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &x.values[i], 4);
      if (dtype == StDtype::BF16) {
        h[i] = uint16_t(bits >> 16);  // truncation: exact in bf16, so the rounded value is known
        bits = uint32_t(h[i]) << 16;
        std::memcpy(&x.values[i], &bits, 4);
      } else {
        h[i] = fp32_to_fp16(x.values[i]);
        x.values[i] = fp16_to_fp32(h[i]);
      }
    }
    views.push_back({name, dtype, x.shape, h.data(), h.size() * 2});
  }
  write_safetensors((dir / kAdapterWeightsFile).string(), views, {{"format", "pt"}});
  return t;
}

}  // namespace ktl::testing
