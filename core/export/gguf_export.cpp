#include "core/export/gguf_export.h"

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <vector>

#include "core/base/file_util.h"
#include "core/export/gguf_writer.h"
#include "core/safetensors/safetensors.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl {

using json = nlohmann::json;

GgufDtype parse_gguf_dtype(const std::string& s) {
  if (s == "f32") return GgufDtype::kF32;
  if (s == "f16") return GgufDtype::kF16;
  if (s == "q8_0") return GgufDtype::kQ8_0;
  throw std::invalid_argument("unknown GGUF dtype '" + s + "' (expected f32, f16 or q8_0)");
}

const char* gguf_dtype_name(GgufDtype d) {
  return d == GgufDtype::kF32 ? "f32" : d == GgufDtype::kF16 ? "f16" : "q8_0";
}

uint32_t gguf_file_type(GgufDtype d) {
  return d == GgufDtype::kF32 ? 0 : d == GgufDtype::kF16 ? 1 : 7;  // LLAMA_FTYPE_ALL_F32, ...
}

ModelConfig read_hf_llama_config(const std::string& path) {
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error(path + ": not a JSON object");
  auto fail = [&](const std::string& m) { throw std::runtime_error(path + ": " + m); };
  auto get_int = [&](const char* key, bool required, int fallback) {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) fail(std::string("missing key '") + key + "'");
      return fallback;
    }
    if (!j[key].is_number_integer()) fail(std::string("key '") + key + "' must be an integer");
    return j[key].get<int>();
  };
  auto get_num = [&](const char* key, double fallback) {
    if (!j.contains(key)) return fallback;
    if (!j[key].is_number()) fail(std::string("key '") + key + "' must be a number");
    return j[key].get<double>();
  };
  if (j.contains("model_type") && j["model_type"] != "llama")
    fail("model_type must be \"llama\", got " + j["model_type"].dump());
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    fail("hidden_act must be \"silu\", got " + j["hidden_act"].dump());
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    fail("rope_scaling is not supported by this exporter");
  ModelConfig c;
  c.vocab_size = get_int("vocab_size", true, 0);
  c.hidden_size = get_int("hidden_size", true, 0);
  c.intermediate_size = get_int("intermediate_size", true, 0);
  c.num_layers = get_int("num_hidden_layers", true, 0);
  c.num_heads = get_int("num_attention_heads", true, 0);
  c.num_kv_heads = get_int("num_key_value_heads", false, c.num_heads);  // HF default
  c.max_seq_length = get_int("max_position_embeddings", true, 0);
  c.rms_norm_eps = get_num("rms_norm_eps", 1e-6);  // LlamaConfig defaults
  c.rope_theta = get_num("rope_theta", 10000.0);
  if (j.contains("tie_word_embeddings")) {
    if (!j["tie_word_embeddings"].is_boolean()) fail("key 'tie_word_embeddings' must be a boolean");
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  } else {
    c.tie_word_embeddings = false;
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  if (c.hidden_size % c.num_heads) fail("hidden_size must be a multiple of num_attention_heads");
  if (get_int("head_dim", false, c.head_dim()) != c.head_dim())
    fail("head_dim other than hidden_size / num_attention_heads is not supported");
  return c;
}

std::string gguf_tensor_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  static const std::regex layer(R"(model\.layers\.(\d+)\.(.+)\.weight)");
  static const std::pair<const char*, const char*> parts[] = {
      {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
      {"mlp.gate_proj", "ffn_gate"},       {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}};
  std::smatch m;
  if (!std::regex_match(hf, m, layer)) return "";
  for (const auto& [from, to] : parts)
    if (m[2] == from) return "blk." + m[1].str() + "." + to + ".weight";
  return "";
}

namespace {

// Row index mapping of the RoPE permutation: interleaved row -> Hugging Face row.
int64_t hf_row(int64_t r, int64_t head_dim) {
  const int64_t h = r / head_dim, k = r % head_dim, half = head_dim / 2;
  return h * head_dim + (k % 2) * half + k / 2;  // (h, i, j) <- (h, j, i)
}

void check_rope_args(int64_t rows, int n_heads) {
  if (n_heads <= 0 || rows % n_heads || (rows / n_heads) % 2)
    throw std::invalid_argument("rope permutation needs rows = n_heads * even head_dim");
}

}  // namespace

void permute_rope_rows(const float* src, float* dst, int64_t rows, int64_t cols, int n_heads) {
  check_rope_args(rows, n_heads);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * cols, src + hf_row(r, rows / n_heads) * cols, cols * sizeof(float));
}

void unpermute_rope_rows(const float* src, float* dst, int64_t rows, int64_t cols, int n_heads) {
  check_rope_args(rows, n_heads);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + hf_row(r, rows / n_heads) * cols, src + r * cols, cols * sizeof(float));
}

std::vector<float> safetensors_to_f32(const SafetensorsFile& st, const StTensorInfo& t) {
  const size_t n = t.nbytes / st_dtype_size(t.dtype);
  std::vector<float> out(n);
  const auto* p = static_cast<const uint8_t*>(st.data(t));
  if (t.dtype == StDtype::F32) {
    std::memcpy(out.data(), p, n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = uint16_t(p[2 * i] | (p[2 * i + 1] << 8));
      out[i] = t.dtype == StDtype::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
    }
  }
  return out;
}

std::string encode_gguf_tensor(const std::vector<float>& x, GgmlType type) {
  std::string out;
  if (type == GgmlType::kF32) {
    out.assign(reinterpret_cast<const char*>(x.data()), x.size() * 4);
  } else if (type == GgmlType::kF16) {
    out.resize(x.size() * 2);
    for (size_t i = 0; i < x.size(); ++i) {
      const uint16_t h = fp32_to_fp16(x[i]);
      out[2 * i] = char(h & 0xff);
      out[2 * i + 1] = char(h >> 8);
    }
  } else {
    out.resize(x.size() / kQ8Block * kQ8BlockBytes);
    quantize_q8_0(x.data(), x.size(), reinterpret_cast<uint8_t*>(&out[0]));
  }
  return out;
}

namespace {

struct Expected {
  std::string hf_name;
  std::vector<int64_t> shape;  // PyTorch order
  int rope_heads = 0;          // > 0: permute rows for llama.cpp's rope
};

std::vector<Expected> expected_tensors(const ModelConfig& c) {
  const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size, Dh = c.head_dim();
  std::vector<Expected> e = {{"model.embed_tokens.weight", {V, D}}};
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    e.push_back({p + "input_layernorm.weight", {D}});
    e.push_back({p + "self_attn.q_proj.weight", {c.num_heads * Dh, D}, c.num_heads});
    e.push_back({p + "self_attn.k_proj.weight", {c.num_kv_heads * Dh, D}, c.num_kv_heads});
    e.push_back({p + "self_attn.v_proj.weight", {c.num_kv_heads * Dh, D}});
    e.push_back({p + "self_attn.o_proj.weight", {D, c.num_heads * Dh}});
    e.push_back({p + "post_attention_layernorm.weight", {D}});
    e.push_back({p + "mlp.gate_proj.weight", {F, D}});
    e.push_back({p + "mlp.up_proj.weight", {F, D}});
    e.push_back({p + "mlp.down_proj.weight", {D, F}});
  }
  e.push_back({"model.norm.weight", {D}});
  if (!c.tie_word_embeddings) e.push_back({"lm_head.weight", {V, D}});
  return e;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void set_model_metadata(GgufWriter& w, const ModelConfig& c, const std::string& name,
                        GgufDtype dtype) {
  w.set("general.architecture", GgufValue::str("llama"));
  w.set("general.name", GgufValue::str(name));
  w.set("llama.vocab_size", GgufValue::u32(c.vocab_size));
  w.set("llama.context_length", GgufValue::u32(c.max_seq_length));
  w.set("llama.embedding_length", GgufValue::u32(c.hidden_size));
  w.set("llama.block_count", GgufValue::u32(c.num_layers));
  w.set("llama.feed_forward_length", GgufValue::u32(c.intermediate_size));
  w.set("llama.rope.dimension_count", GgufValue::u32(c.head_dim()));
  w.set("llama.attention.head_count", GgufValue::u32(c.num_heads));
  w.set("llama.attention.head_count_kv", GgufValue::u32(c.num_kv_heads));
  w.set("llama.attention.layer_norm_rms_epsilon", GgufValue::f32(float(c.rms_norm_eps)));
  w.set("llama.rope.freq_base", GgufValue::f32(float(c.rope_theta)));
  w.set("general.file_type", GgufValue::u32(gguf_file_type(dtype)));
  w.set("general.quantization_version", GgufValue::u32(2));  // GGML_QNT_VERSION
}

// tokenizer.ggml.*: the SentencePiece pieces, scores and types, padded like convert_hf_to_gguf
// when config.json's vocab_size is larger than the tokenizer's.
int set_vocab_metadata(GgufWriter& w, const Tokenizer& tok, const ModelConfig& c,
                       const std::string& tok_path) {
  const int n = tok.vocab_size();
  if (n > c.vocab_size)
    throw std::runtime_error(tok_path + " has " + std::to_string(n) +
                             " pieces but config.json's vocab_size is " +
                             std::to_string(c.vocab_size));
  std::vector<std::string> tokens(c.vocab_size);
  std::vector<float> scores(c.vocab_size, -1000.f);
  std::vector<int32_t> types(c.vocab_size, static_cast<int32_t>(PieceType::kUnused));
  for (int i = 0; i < c.vocab_size; ++i) {
    if (i >= n) {
      tokens[i] = "[PAD" + std::to_string(i) + "]";
      continue;
    }
    tokens[i] = tok.id_to_piece(i);
    scores[i] = tok.score(i);
    types[i] = static_cast<int32_t>(tok.type(i));
  }
  // add_dummy_prefix shows as a leading U+2581 on the first piece of a plain word.
  const auto pieces = tok.encode_pieces("a");
  const bool space_prefix = !pieces.empty() && pieces[0].rfind("\xe2\x96\x81", 0) == 0;
  w.set("tokenizer.ggml.model", GgufValue::str("llama"));
  w.set("tokenizer.ggml.pre", GgufValue::str("default"));
  w.set("tokenizer.ggml.tokens", GgufValue::strings(tokens));
  w.set("tokenizer.ggml.scores", GgufValue::f32s(scores));
  w.set("tokenizer.ggml.token_type", GgufValue::i32s(types));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(tok.bos_id()));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(tok.eos_id()));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(tok.unk_id()));
  w.set("tokenizer.ggml.padding_token_id", GgufValue::u32(tok.pad_id()));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
  w.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(false));
  w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(space_prefix));
  // A chat checkpoint: llama.cpp and Ollama format chats with the template ktl trained on and
  // stop at its end of turn (eot, besides eos </s>). A template ktl cannot render is passed on
  // as it is: llama.cpp renders Jinja itself.
  const ChatFormatDetection chat = detect_chat_format(tok);
  if (chat.format == ChatFormat::kChatML || chat.format == ChatFormat::kLegacy) {
    w.set("tokenizer.chat_template", GgufValue::str(ChatTemplate::jinja(chat.format)));
    w.set("tokenizer.ggml.eot_token_id",
          GgufValue::u32(uint32_t(tok.piece_to_id(ChatTemplate::end_of_turn_piece(chat.format)))));
  } else if (tok.stored_chat_template() && !tok.stored_chat_template()->empty()) {
    w.set("tokenizer.chat_template", GgufValue::str(*tok.stored_chat_template()));
  }
  return n;
}

}  // namespace

namespace {

// The weights, validated against config.json, as GGUF tensors read and converted at write time.
// Returns how many q8_0 tensors fell back to f16.
int add_weight_tensors(GgufWriter& w, const SafetensorsFile& st, const std::string& st_path,
                       const ModelConfig& cfg, GgufDtype dtype) {
  const auto expected = expected_tensors(cfg);
  for (const auto& t : st.tensors()) {
    bool known = false;
    for (const auto& e : expected) known = known || e.hf_name == t.name;
    if (!known && !(cfg.tie_word_embeddings && t.name == "lm_head.weight"))
      throw std::runtime_error(st_path + ": unexpected tensor '" + t.name + "'");
  }
  int fallbacks = 0;
  for (const auto& e : expected) {
    const StTensorInfo* t = st.find(e.hf_name);
    if (!t) throw std::runtime_error(st_path + ": missing tensor '" + e.hf_name + "'");
    if (t->shape != e.shape)
      throw std::runtime_error(st_path + ": tensor '" + e.hf_name + "' has shape " +
                               shape_str(t->shape) + ", config.json needs " + shape_str(e.shape));
    if (t->dtype != StDtype::F32 && t->dtype != StDtype::F16 && t->dtype != StDtype::BF16)
      throw std::runtime_error(st_path + ": tensor '" + e.hf_name + "' has dtype " +
                               st_dtype_name(t->dtype) + "; only F32, F16 and BF16 export");
    std::vector<uint64_t> ne(e.shape.rbegin(), e.shape.rend());  // ggml: innermost first
    GgmlType type = GgmlType::kF32;                              // norms stay f32
    if (ne.size() >= 2 && dtype == GgufDtype::kF16) type = GgmlType::kF16;
    if (ne.size() >= 2 && dtype == GgufDtype::kQ8_0) {
      type = ne[0] % kQ8Block == 0 ? GgmlType::kQ8_0 : GgmlType::kF16;
      fallbacks += type == GgmlType::kF16;
    }
    const int heads = e.rope_heads;
    const int64_t rows = e.shape[0], cols = e.shape.size() > 1 ? e.shape[1] : 1;
    w.add_tensor(gguf_tensor_name(e.hf_name), type, ne, [&st, t, heads, rows, cols, type] {
      std::vector<float> x = safetensors_to_f32(st, *t);
      if (heads > 0) {
        std::vector<float> y(x.size());
        permute_rope_rows(x.data(), y.data(), rows, cols, heads);
        x.swap(y);
      }
      return encode_gguf_tensor(x, type);
    });
  }
  return fallbacks;
}

}  // namespace

GgufExportSummary export_gguf(const GgufExportOptions& o) {
  const fs::path dir(o.model_dir);
  if (!fs::is_directory(dir)) throw std::runtime_error("model directory not found: " + o.model_dir);
  if (fs::exists(dir / "adapter_config.json") && !fs::exists(dir / "model.safetensors"))
    throw std::runtime_error(o.model_dir + " is a LoRA adapter, not a model: export it with "
                             "--format gguf-lora (beside its base's GGUF), or merge it first "
                             "(ktl merge-lora)");
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
    if (!fs::exists(dir / f)) throw std::runtime_error("missing " + (dir / f).string());
  const ModelConfig cfg = read_hf_llama_config((dir / "config.json").string());
  const std::string st_path = (dir / "model.safetensors").string();
  const SafetensorsFile st = SafetensorsFile::open(st_path);  // mapped until write() is done
  const std::string tok_path = (dir / "tokenizer.model").string();
  const auto tok = Tokenizer::load(tok_path);

  GgufExportSummary sum;
  GgufWriter w;
  std::string name = o.name;
  const fs::path abs = fs::absolute(dir).lexically_normal();
  if (name.empty()) name = abs.filename().string();
  if (name.empty()) name = abs.parent_path().filename().string();  // "dir/" has an empty filename
  set_model_metadata(w, cfg, name, o.dtype);
  sum.vocab_size = set_vocab_metadata(w, *tok, cfg, tok_path);
  sum.f16_fallbacks = add_weight_tensors(w, st, st_path, cfg, o.dtype);
  sum.tensors = w.tensor_count();
  sum.bytes = w.write(o.out_path);
  return sum;
}

}  // namespace ktl
