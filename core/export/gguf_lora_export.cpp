#include "core/export/gguf_lora_export.h"

#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/export/gguf_writer.h"
#include "core/safetensors/safetensors.h"

namespace ktl {

namespace {

bool is_checkpoint_dir(const fs::path& p) {
  return fs::is_regular_file(p / "config.json");
}

// `p` as given (relative to the working directory) or relative to the adapter directory.
std::optional<fs::path> find_dir(const std::string& p, const fs::path& adapter_dir) {
  if (p.empty()) return std::nullopt;
  if (is_checkpoint_dir(p)) return fs::path(p);
  if (fs::path(p).is_relative() && is_checkpoint_dir(adapter_dir / p)) return adapter_dir / p;
  return std::nullopt;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Heads whose RoPE rows lora_b must be permuted by (0: none), as gguf_export does for the base.
int rope_heads(const ModelConfig& c, const PeftKey& k) {
  if (!k.is_b) return 0;
  if (k.target == LoraTarget::kQ) return c.num_heads;
  if (k.target == LoraTarget::kK) return c.num_kv_heads;
  return 0;
}

// Checks one tensor of the adapter against the config and the base; returns its key.
PeftKey check_tensor(const StTensorInfo& t, const LoraConfig& lc, const ModelConfig& base,
                     const std::string& path) {
  auto fail = [&](const std::string& m) {
    throw std::runtime_error(path + ": tensor '" + t.name + "' " + m);
  };
  const auto key = parse_peft_tensor_name(t.name);
  if (!key) fail("is not a LoRA weight of a Llama projection (PEFT names only)");
  if (key->layer >= base.num_layers)
    fail("names layer " + std::to_string(key->layer) + " of a " + std::to_string(base.num_layers) +
         "-layer base model");
  if (!lc.targets_has(key->target)) fail("is for a module not in target_modules");
  const auto [out, in] = lora_target_shape(base, key->target);
  const std::vector<int64_t> want =
      key->is_b ? std::vector<int64_t>{out, lc.rank} : std::vector<int64_t>{lc.rank, in};
  if (t.shape != want)
    fail("has shape " + shape_str(t.shape) + "; r = " + std::to_string(lc.rank) +
         " on the base model needs " + shape_str(want) + " (wrong base checkpoint?)");
  if (t.dtype != StDtype::F32 && t.dtype != StDtype::F16 && t.dtype != StDtype::BF16)
    fail(std::string("has dtype ") + st_dtype_name(t.dtype) + "; only F32, F16 and BF16 export");
  return *key;
}

LoraConfig read_adapter_config(const fs::path& dir) {
  const fs::path p = dir / kAdapterConfigFile;
  if (!fs::exists(p))
    throw std::runtime_error(dir.string() + ": no " + kAdapterConfigFile +
                             " (not a LoRA adapter directory)");
  try {
    LoraConfig c = lora_config_from_peft_json(read_file(p));
    c.validate();
    if (!c.enabled()) throw std::invalid_argument("r must be > 0");
    return c;
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(p.string() + ": " + e.what());
  }
}

// Adds every adapter tensor in block order (layer, target, A then B); throws on any problem.
void add_lora_tensors(GgufWriter& w, const SafetensorsFile& st, const std::string& st_path,
                      const LoraConfig& lc, const ModelConfig& base, GgmlType type) {
  constexpr size_t kTargets = kAllLoraTargets.size();
  std::vector<const StTensorInfo*> slots(size_t(base.num_layers) * kTargets * 2, nullptr);
  auto slot = [&](const PeftKey& k) -> const StTensorInfo*& {
    return slots[(size_t(k.layer) * kTargets + size_t(k.target)) * 2 + (k.is_b ? 1 : 0)];
  };
  for (const auto& t : st.tensors()) slot(check_tensor(t, lc, base, st_path)) = &t;
  for (int l = 0; l < base.num_layers; ++l) {
    for (auto target : lc.targets) {
      for (bool is_b : {false, true}) {
        const PeftKey k{l, target, is_b};
        const StTensorInfo* t = slot(k);
        if (!t)
          throw std::runtime_error(st_path + ": tensor '" + peft_tensor_name(k) + "' is missing");
        const int heads = rope_heads(base, k);
        const int64_t rows = t->shape[0], cols = t->shape[1];
        std::vector<uint64_t> ne = {uint64_t(cols), uint64_t(rows)};  // ggml: innermost first
        w.add_tensor(gguf_lora_tensor_name(k), type, ne, [&st, t, heads, rows, cols, type] {
          std::vector<float> x = safetensors_to_f32(st, *t);  // [rows, cols]
          if (heads > 0) {
            std::vector<float> y(x.size());
            permute_rope_rows(x.data(), y.data(), rows, cols, heads);
            x.swap(y);
          }
          return encode_gguf_tensor(x, type);
        });
      }
    }
  }
}

}  // namespace

std::string resolve_lora_base_dir(const std::string& adapter_dir, const std::string& base_dir) {
  const fs::path adir(adapter_dir);
  if (!base_dir.empty()) {
    if (!fs::is_directory(base_dir))
      throw std::runtime_error("base checkpoint directory not found: " + base_dir);
    if (!is_checkpoint_dir(base_dir))
      throw std::runtime_error("base checkpoint " + base_dir + " has no config.json");
    return base_dir;
  }
  const fs::path marker = adir / kLoraBaseFile;
  std::string named;
  if (fs::exists(marker)) {
    named = read_lora_base(adapter_dir).base;
    if (auto d = find_dir(named, adir)) return d->string();
  }
  // A LoRA training checkpoint also carries a copy of its base's config.json.
  if (is_checkpoint_dir(adir)) return adapter_dir;
  if (!named.empty())
    throw std::runtime_error(marker.string() + " names base checkpoint '" + named +
                             "', which has no config.json; pass --base DIR");
  const LoraConfig lc = read_adapter_config(adir);
  if (auto d = find_dir(lc.base_model, adir)) return d->string();
  throw std::runtime_error(
      "no base checkpoint for " + adapter_dir + ": pass --base DIR (the checkpoint the adapter " +
      "was trained on; its config.json gives the head counts llama.cpp's q/k layout needs)" +
      (lc.base_model.empty() ? std::string()
                             : "; base_model_name_or_path '" + lc.base_model +
                                   "' is not a local checkpoint directory"));
}

std::string gguf_lora_tensor_name(const PeftKey& k) {
  static const char* const kNames[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                       "ffn_gate", "ffn_up", "ffn_down"};
  return "blk." + std::to_string(k.layer) + "." + kNames[static_cast<int>(k.target)] + ".weight" +
         (k.is_b ? ".lora_b" : ".lora_a");
}

GgufLoraExportSummary export_gguf_lora(const GgufLoraExportOptions& o) {
  if (o.dtype != GgufDtype::kF32 && o.dtype != GgufDtype::kF16)
    throw std::invalid_argument(std::string("a LoRA GGUF is f32 or f16, not ") +
                                gguf_dtype_name(o.dtype));
  const fs::path adir(o.adapter_dir);
  if (!fs::is_directory(adir))
    throw std::runtime_error("adapter directory not found: " + o.adapter_dir);
  GgufLoraExportSummary sum;
  sum.config = read_adapter_config(adir);
  sum.base_dir = resolve_lora_base_dir(o.adapter_dir, o.base_dir);
  const ModelConfig base = read_hf_llama_config((fs::path(sum.base_dir) / "config.json").string());
  sum.layers = base.num_layers;
  const std::string st_path = (adir / kAdapterWeightsFile).string();
  const SafetensorsFile st = SafetensorsFile::open(st_path);  // mapped until write() is done

  std::string name = o.name;
  const fs::path abs = fs::absolute(adir).lexically_normal();
  if (name.empty()) name = abs.filename().string();
  if (name.empty()) name = abs.parent_path().filename().string();  // "dir/" has an empty filename
  GgufWriter w;
  // Keys in convert_lora_to_gguf.py's order.
  w.set("general.architecture", GgufValue::str("llama"));
  w.set("general.type", GgufValue::str("adapter"));
  w.set("adapter.type", GgufValue::str("lora"));
  w.set("general.name", GgufValue::str(name));
  w.set("adapter.lora.alpha", GgufValue::f32(float(sum.config.alpha)));
  w.set("general.quantization_version", GgufValue::u32(2));  // GGML_QNT_VERSION
  const GgmlType type = o.dtype == GgufDtype::kF16 ? GgmlType::kF16 : GgmlType::kF32;
  add_lora_tensors(w, st, st_path, sum.config, base, type);
  sum.tensors = w.tensor_count();
  sum.bytes = w.write(o.out_path);
  return sum;
}

}  // namespace ktl
