#include "core/engine/engine_model.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <stdexcept>
#include <tuple>

#include "core/base/huge_page_arena.h"
#include "core/engine/step_profile.h"
#include "core/kernels/decode_ops.h"
#include "core/model/ops.h"

namespace ktl {

namespace {

std::string layer_name(int i, const std::string& rest) {
  return "model.layers." + std::to_string(i) + "." + rest;
}

// An uninitialised tensor in `arena` (huge pages: core/base/huge_page_arena.h); its deleter
// holds the arena, which goes when the last such tensor goes.
torch::Tensor arena_empty(const std::shared_ptr<HugePageArena>& arena, int64_t rows, int64_t cols,
                          torch::ScalarType st) {
  const size_t bytes = static_cast<size_t>(rows * cols) * c10::elementSize(st);
  void* p = arena->allocate(bytes == 0 ? 1 : bytes, 64);
  return torch::from_blob(
      p, {rows, cols}, [arena](void*) {}, torch::TensorOptions().dtype(st));
}

// Joins [out_i, in] parts along the output dim into one [sum out_i, in] tensor of `st`: in
// `arena` when there is one (each part converted while copied), else torch::cat (one part is
// used as it is: an fp32 weight then shares the source's storage).
torch::Tensor join_rows(const std::vector<torch::Tensor>& parts, torch::ScalarType st,
                        const std::shared_ptr<HugePageArena>& arena) {
  if (!arena) {
    auto j = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
    return j.to(st).contiguous();
  }
  int64_t rows = 0;
  for (const auto& p : parts) rows += p.size(0);
  auto out = arena_empty(arena, rows, parts[0].size(1), st);  // [sum out_i, in]
  int64_t at = 0;
  for (const auto& p : parts) {
    out.narrow(0, at, p.size(0)).copy_(p);
    at += p.size(0);
  }
  return out;
}

// Fuses [out_i, in] weights along the output dim; int8 parts stay as they are when int8 is asked.
// The fused weight goes to `arena` (null: plain tensors).
PackedLinear fuse(const std::vector<StoredWeight>& parts, WeightDtype dtype,
                  const std::shared_ptr<HugePageArena>& arena) {
  std::vector<torch::Tensor> vals, scales;
  if (dtype == WeightDtype::kInt8) {
    // Scales are per output row, so quantizing each part and joining the int8 parts is the same
    // as quantizing the joined weight, without an fp32 copy of the fused matrix.
    for (const auto& p : parts) {
      auto [q, s] = p.value.scalar_type() == torch::kInt8 ? std::pair{p.value, p.scales}
                                                          : quantize_int8_per_channel(p.value);
      vals.push_back(q);
      scales.push_back(s);
    }
    // The quantized engine replaces the weight with its own unpacked copy: no arena there, or
    // the arena's copy would be held for nothing.
    const bool engine_copy = int8_prefill_keeps_engine_copy();
    return PackedLinear::from_int8(join_rows(vals, torch::kInt8, engine_copy ? nullptr : arena),
                                   join_rows(scales, torch::kFloat32, nullptr).view({-1}));
  }
  for (const auto& p : parts) {
    vals.push_back(p.value.scalar_type() == torch::kInt8
                       ? p.value.to(torch::kFloat32) * p.scales.unsqueeze(1)
                       : p.value);
  }
  const auto st = dtype == WeightDtype::kBf16 ? torch::kBFloat16 : torch::kFloat32;
  return PackedLinear::from_float(join_rows(vals, st, arena), dtype);
}

torch::Tensor as_float(const StoredWeight& w) {
  if (w.value.scalar_type() == torch::kInt8) {
    return w.value.to(torch::kFloat32) * w.scales.unsqueeze(1);
  }
  return w.value.to(torch::kFloat32).contiguous();
}

}  // namespace

EngineModel::EngineModel(const ModelConfig& cfg, const WeightSource& src, WeightDtype dtype)
    : cfg_(cfg), dtype_(dtype) {
  cfg_.validate();
  torch::NoGradGuard no_grad;
  // The matrices every decode step streams live in huge pages (1-stream decode is bound by the
  // memory read rate: huge_page_arena.h); the tensors hold the arena, not the model.
  // KTL_HUGE_PAGES=0 keeps plain tensors (to measure what huge pages give).
  const char* env = std::getenv("KTL_HUGE_PAGES");
  auto arena = env && std::string(env) == "0" ? nullptr : std::make_shared<HugePageArena>();
  auto fuse = [&](const std::vector<StoredWeight>& parts, WeightDtype dt) {
    return ktl::fuse(parts, dt, arena);
  };
  for (int i = 0; i < cfg_.num_layers; ++i) {
    Layer l;
    l.attn_norm = as_float(src(layer_name(i, "input_layernorm.weight")));
    l.ffn_norm = as_float(src(layer_name(i, "post_attention_layernorm.weight")));
    l.qkv = fuse({src(layer_name(i, "self_attn.q_proj.weight")),
                  src(layer_name(i, "self_attn.k_proj.weight")),
                  src(layer_name(i, "self_attn.v_proj.weight"))},
                 dtype);
    l.o = fuse({src(layer_name(i, "self_attn.o_proj.weight"))}, dtype);
    l.gate_up =
        fuse({src(layer_name(i, "mlp.gate_proj.weight")), src(layer_name(i, "mlp.up_proj.weight"))},
             dtype);
    l.down = fuse({src(layer_name(i, "mlp.down_proj.weight"))}, dtype);
    layers_.push_back(std::move(l));
  }
  final_norm_ = as_float(src("model.norm.weight"));
  StoredWeight emb = src("model.embed_tokens.weight");
  StoredWeight head = cfg_.tie_word_embeddings ? emb : src("lm_head.weight");
  head_ = fuse({head}, dtype);
  if (cfg_.tie_word_embeddings) {
    // Tied: look embeddings up in the head's table (one copy of the big matrix, any dtype).
    if (dtype == WeightDtype::kInt8) {
      std::tie(embed_, embed_scales_) = head_.int8_parts();
    } else {
      embed_ = head_.weight();
    }
  } else if (dtype == WeightDtype::kInt8) {
    if (emb.value.scalar_type() == torch::kInt8) {
      embed_ = emb.value;
      embed_scales_ = emb.scales;
    } else {
      std::tie(embed_, embed_scales_) = quantize_int8_per_channel(emb.value);  // any float
    }
  } else if (dtype == WeightDtype::kBf16) {
    embed_ = as_float(emb).to(torch::kBFloat16);
  } else {
    embed_ = as_float(emb);
  }
}

EngineModel EngineModel::from_module(TransformerImpl& m, WeightDtype dtype) {
  std::map<std::string, torch::Tensor> params;
  for (const auto& p : m.named_parameters()) params[hf_parameter_name(p.key())] = p.value();
  auto src = [&](const std::string& name) {
    auto it = params.find(name);
    if (it == params.end()) throw std::runtime_error("model has no parameter '" + name + "'");
    return StoredWeight{it->second.detach(), {}};
  };
  return EngineModel(m.config(), src, dtype);
}

std::vector<int64_t> hf_weight_shape(const ModelConfig& c, const std::string& name) {
  const int64_t D = c.hidden_size, F = c.intermediate_size, Dh = c.head_dim();
  auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (has("layernorm") || name == "model.norm.weight") return {D};
  if (has("embed_tokens") || name == "lm_head.weight") return {c.vocab_size, D};
  if (has("q_proj")) return {c.num_heads * Dh, D};
  if (has("k_proj") || has("v_proj")) return {c.num_kv_heads * Dh, D};
  if (has("o_proj")) return {D, c.num_heads * Dh};
  if (has("gate_proj") || has("up_proj")) return {F, D};
  if (has("down_proj")) return {D, F};
  throw std::runtime_error("unknown weight '" + name + "'");
}

EngineModel EngineModel::random_init(const ModelConfig& cfg, WeightDtype dtype, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  const double std_ = 0.02, resid_std = 0.02 / std::sqrt(2.0 * cfg.num_layers);
  auto src = [&](const std::string& name) {
    const auto shape = hf_weight_shape(cfg, name);
    if (shape.size() == 1) return StoredWeight{torch::ones(shape), {}};
    const bool resid =
        name.find("o_proj") != std::string::npos || name.find("down_proj") != std::string::npos;
    return StoredWeight{at::normal(0.0, resid ? resid_std : std_, shape, gen), {}};
  };
  return EngineModel(cfg, src, dtype);
}

torch::Tensor EngineModel::embed(const torch::Tensor& ids) const {
  auto rows = embed_.index_select(0, ids);  // [N, D]
  if (embed_scales_.defined()) {
    return rows.to(torch::kFloat32) * embed_scales_.index_select(0, ids).unsqueeze(1);
  }
  return rows.to(torch::kFloat32);
}

void EngineModel::use_torch_ops(torch::Device device) {
  torch::NoGradGuard no_grad;
  if (dtype_ == WeightDtype::kInt8) {
    std::fprintf(stderr,
                 "[engine] int8 weights dequantized to bf16 on %s (the int8 kernels are CPU "
                 "code)\n",
                 device.str().c_str());
  }
  auto move = [&](PackedLinear& l) { l = l.to_device(device); };
  for (auto& l : layers_) {
    l.attn_norm = l.attn_norm.to(device);
    l.ffn_norm = l.ffn_norm.to(device);
    for (PackedLinear* p : {&l.qkv, &l.o, &l.gate_up, &l.down}) move(*p);
  }
  final_norm_ = final_norm_.to(device);
  move(head_);
  if (cfg_.tie_word_embeddings) {
    embed_ = head_.weight();  // still one copy of the big matrix
    embed_scales_ = torch::Tensor();
  } else if (embed_scales_.defined()) {
    auto rows = embed_.to(device).to(torch::kFloat32) * embed_scales_.to(device).unsqueeze(1);
    embed_ = rows.to(torch::kBFloat16);  // [V, D]
    embed_scales_ = torch::Tensor();
  } else {
    embed_ = embed_.to(device);
  }
  if (dtype_ == WeightDtype::kInt8) dtype_ = WeightDtype::kBf16;
  device_ = device;
  torch_ops_ = true;
}

torch::Tensor EngineModel::forward(const std::vector<int>& tokens, const std::vector<AttnSeq>& seqs,
                                   PagedKvPool& pool, const std::vector<int>& logit_rows,
                                   AttnPath path,
                                   const std::vector<const EngineLora*>& row_lora) const {
  torch::NoGradGuard no_grad;
  const int64_t N = static_cast<int64_t>(tokens.size());
  if (!row_lora.empty() && static_cast<int64_t>(row_lora.size()) != N)
    throw std::invalid_argument("forward: row_lora needs one entry per row");
  // Each adapter's rows, found once per step; after every base projection each adds its
  // low-rank product to its own rows.
  const std::vector<LoraRowGroup> lora = group_lora_rows(row_lora, device_);
  auto with_lora = [&](torch::Tensor y, int layer, FusedLora EngineLora::Layer::*which,
                       const torch::Tensor& x) {
    if (lora.empty()) return y;
    const StepTimer timer(StepPart::kMatmuls);  // the adapters' projections
    if (torch_ops_)
      apply_lora(lora, layer, which, x, y);
    else
      apply_lora_cpu(lora, layer, which, x, y);  // its own loops on the CPU fast path
    return y;
  };
  const int64_t H = cfg_.num_heads, KV = cfg_.num_kv_heads, Dh = cfg_.head_dim();
  const int64_t F = cfg_.intermediate_size;
  if (torch_ops_) path = AttnPath::kGather;
  std::vector<int64_t> ids(tokens.begin(), tokens.end()), pos(N);
  for (const auto& s : seqs) {
    for (int t = 0; t < s.num_tokens; ++t) pos[s.row + t] = s.start + t;
  }
  // Small index tensors are built on the host and copied over (rope in fp64 on the host: MPS
  // has no fp64).
  auto id_t = torch::tensor(ids, torch::kLong).to(device_);  // [N]
  auto [cos_h, sin_h] = rope_cos_sin(torch::tensor(pos, torch::kLong), Dh, cfg_.rope_theta);
  auto cos = cos_h.to(device_), sin = sin_h.to(device_);          // [N, Dh]
  auto slots = compute_slots(seqs, pool.block_size).to(device_);  // [N]
  auto h = embed(id_t);                                           // [N, D]
  // The CPU path runs the per-row operations as single passes over the rows
  // (core/kernels/decode_ops.h); the torch-ops path keeps LibTorch's (any device).
  const bool fused = !torch_ops_;
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  auto norm = [&](const torch::Tensor& x, const torch::Tensor& w) {
    if (!fused) return rms_norm(x, w, cfg_.rms_norm_eps);
    auto xc = x.contiguous();
    auto y = torch::empty_like(xc);  // [N, D]
    rms_norm_rows(xc.data_ptr<float>(), w.data_ptr<float>(), xc.size(0), xc.size(1), eps,
                  y.data_ptr<float>());
    return y;
  };
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    const int li = static_cast<int>(i);
    auto xn = norm(h, l.attn_norm);                                            // [N, D]
    auto qkv = with_lora(l.qkv.forward(xn), li, &EngineLora::Layer::qkv, xn);  // [N, (H+2KV)*Dh]
    if (fused) {  // q and k heads rotated in place in the fresh projection
      qkv = qkv.contiguous();
      rope_rows_inplace(qkv.data_ptr<float>(), N, qkv.size(1), H + KV, Dh, cos.data_ptr<float>(),
                        sin.data_ptr<float>());
    }
    auto q = qkv.narrow(1, 0, H * Dh).view({N, H, Dh});
    auto k = qkv.narrow(1, H * Dh, KV * Dh).view({N, KV, Dh});
    auto v = qkv.narrow(1, (H + KV) * Dh, KV * Dh).reshape({N, KV, Dh});
    if (!fused) {
      q = apply_rope(q, cos, sin);  // [N, H, Dh]
      k = apply_rope(k, cos, sin);  // [N, KV, Dh]
    }
    const torch::Tensor attn = [&] {
      const StepTimer timer(StepPart::kAttention);
      write_kv(pool.k[i], pool.v[i], slots, k, v);
      return paged_attention(q, pool.k[i], pool.v[i], seqs, path);  // [N, H, Dh]
    }();
    auto attn_flat = attn.reshape({N, H * Dh});
    h = h + with_lora(l.o.forward(attn_flat), li, &EngineLora::Layer::o, attn_flat);
    auto xf = norm(h, l.ffn_norm);                                                    // [N, D]
    auto gu = with_lora(l.gate_up.forward(xf), li, &EngineLora::Layer::gate_up, xf);  // [N, 2F]
    // LibTorch's silu is vectorised (Sleef exp) and threaded; a plain loop's expf was slower at
    // 16 rows.
    auto act = swiglu(gu.narrow(1, 0, F), gu.narrow(1, F, F));                  // [N, F]
    h = h + with_lora(l.down.forward(act), li, &EngineLora::Layer::down, act);  // [N, D]
  }
  std::vector<int64_t> rows(logit_rows.begin(), logit_rows.end());
  auto last = h.index_select(0, torch::tensor(rows, torch::kLong).to(device_));  // [R, D]
  auto logits = head_.forward(norm(last, final_norm_));                          // [R, V]
  return logits.to(torch::kCPU);  // the sampler reads host memory
}

std::vector<torch::Tensor> EngineModel::tensors() const {
  std::vector<torch::Tensor> out = {final_norm_, embed_};
  if (embed_scales_.defined()) out.push_back(embed_scales_);
  auto add = [&](const PackedLinear& l) {
    for (auto& t : l.tensors()) out.push_back(t);
  };
  add(head_);
  for (const auto& l : layers_) {
    out.push_back(l.attn_norm);
    out.push_back(l.ffn_norm);
    for (const PackedLinear* p : {&l.qkv, &l.o, &l.gate_up, &l.down}) add(*p);
  }
  return out;
}

std::map<torch::ScalarType, int64_t> EngineModel::bytes_by_dtype() const {
  std::map<torch::ScalarType, int64_t> out;
  std::set<const void*> seen;  // each storage once: tied tensors share one
  for (const auto& t : tensors()) {
    if (!seen.insert(t.storage().data()).second) continue;
    out[t.scalar_type()] += static_cast<int64_t>(t.storage().nbytes());
  }
  return out;
}

int64_t EngineModel::packed_bytes() const {
  int64_t b = head_.packed_bytes();
  for (const auto& l : layers_) {
    for (const PackedLinear* p : {&l.qkv, &l.o, &l.gate_up, &l.down}) b += p->packed_bytes();
  }
  return b;
}

int64_t EngineModel::weight_bytes() const {
  int64_t b = packed_bytes();
  for (const auto& [dtype, bytes] : bytes_by_dtype()) b += bytes;
  return b;
}

std::vector<std::pair<std::string, StoredWeight>> EngineModel::export_weights(
    WeightDtype as) const {
  std::vector<std::pair<std::string, StoredWeight>> out;
  auto put = [&](const std::string& name, const PackedLinear& l, int64_t begin, int64_t rows) {
    if (as == WeightDtype::kInt8) {
      auto [q, s] = l.int8_parts();
      out.push_back(
          {name, {q.narrow(0, begin, rows).contiguous(), s.narrow(0, begin, rows).contiguous()}});
    } else {
      out.push_back({name, {l.dequantized().narrow(0, begin, rows).contiguous(), {}}});
    }
  };
  const int64_t H = cfg_.num_heads, KV = cfg_.num_kv_heads, Dh = cfg_.head_dim();
  const int64_t F = cfg_.intermediate_size, D = cfg_.hidden_size;
  out.push_back({"model.embed_tokens.weight", {}});  // filled below (tied: from the head)
  for (int i = 0; i < cfg_.num_layers; ++i) {
    const Layer& l = layers_[i];
    out.push_back({layer_name(i, "input_layernorm.weight"), {l.attn_norm, {}}});
    put(layer_name(i, "self_attn.q_proj.weight"), l.qkv, 0, H * Dh);
    put(layer_name(i, "self_attn.k_proj.weight"), l.qkv, H * Dh, KV * Dh);
    put(layer_name(i, "self_attn.v_proj.weight"), l.qkv, (H + KV) * Dh, KV * Dh);
    put(layer_name(i, "self_attn.o_proj.weight"), l.o, 0, D);
    out.push_back({layer_name(i, "post_attention_layernorm.weight"), {l.ffn_norm, {}}});
    put(layer_name(i, "mlp.gate_proj.weight"), l.gate_up, 0, F);
    put(layer_name(i, "mlp.up_proj.weight"), l.gate_up, F, F);
    put(layer_name(i, "mlp.down_proj.weight"), l.down, 0, D);
  }
  out.push_back({"model.norm.weight", {final_norm_, {}}});
  const int64_t V = cfg_.vocab_size;
  if (cfg_.tie_word_embeddings) {
    put("model.embed_tokens.weight", head_, 0, V);
    out.front() = out.back();
    out.pop_back();
  } else {
    if (as == WeightDtype::kInt8) {  // an int8 table as it is (no fp32 round trip)
      auto [q, s] = embed_scales_.defined() ? std::pair{embed_, embed_scales_}
                                            : quantize_int8_per_channel(embed_);
      out.front().second = {q, s};
    } else {
      out.front().second = {embed_scales_.defined()
                                ? embed_.to(torch::kFloat32) * embed_scales_.unsqueeze(1)
                                : embed_.to(torch::kFloat32),
                            {}};
    }
    put("lm_head.weight", head_, 0, V);
  }
  return out;
}

}  // namespace ktl
