#include "core/model/model_config.h"

#include <nlohmann/json.hpp>

#include <stdexcept>

#include "core/base/file_util.h"
#include "core/base/yaml_config.h"

namespace ktl {

void ModelConfig::validate() const {
  auto req = [](bool ok, const char* field, const std::string& why) {
    if (!ok) throw std::invalid_argument(std::string("model config: ") + field + ": " + why);
  };
  req(vocab_size > 4, "vocab_size", "must be > 4");
  req(hidden_size > 0, "hidden_size", "must be positive");
  req(num_layers > 0, "num_layers", "must be positive");
  req(num_heads > 0 && hidden_size % num_heads == 0, "num_heads", "must divide hidden_size");
  req(num_kv_heads > 0 && num_heads % num_kv_heads == 0, "num_kv_heads", "must divide num_heads");
  req(head_dim() % 2 == 0, "num_heads", "head_dim (hidden_size / num_heads) must be even for RoPE");
  req(intermediate_size > 0, "intermediate_size", "must be positive");
  req(max_seq_length > 0, "max_seq_length", "must be positive");
  req(rope_theta > 0, "rope_theta", "must be positive");
  req(rms_norm_eps > 0, "rms_norm_eps", "must be positive");
}

int64_t ModelConfig::num_parameters() const {
  const int64_t d = hidden_size, v = vocab_size, f = intermediate_size, hd = head_dim();
  const int64_t attn = d * (num_heads * hd) + 2 * d * (num_kv_heads * hd) + (num_heads * hd) * d;
  const int64_t mlp = 3 * d * f;
  const int64_t norms = 2 * d;
  const int64_t per_layer = attn + mlp + norms;
  return v * d + num_layers * per_layer + d + (tie_word_embeddings ? 0 : v * d);
}

double ModelConfig::flops_per_token(int context) const {
  const double d = hidden_size, f = intermediate_size, hd = head_dim();
  const double matmul = num_layers * (d * num_heads * hd + 2 * d * num_kv_heads * hd +
                                      num_heads * hd * d + 3 * d * f) +
                        double(vocab_size) * d;
  const double attention = num_layers * 2.0 * num_heads * hd * context;  // QK^T and AV
  return 2.0 * matmul + 2.0 * attention;
}

ModelConfig load_model_config_yaml(const std::string& path) {
  ModelConfig c;
  load_flat_yaml(path, {
      {"vocab_size", [&](const std::string& v) { c.vocab_size = parse_int(v); }},
      {"hidden_size", [&](const std::string& v) { c.hidden_size = parse_int(v); }},
      {"num_layers", [&](const std::string& v) { c.num_layers = parse_int(v); }},
      {"num_heads", [&](const std::string& v) { c.num_heads = parse_int(v); }},
      {"num_kv_heads", [&](const std::string& v) { c.num_kv_heads = parse_int(v); }},
      {"intermediate_size", [&](const std::string& v) { c.intermediate_size = parse_int(v); }},
      {"max_seq_length", [&](const std::string& v) { c.max_seq_length = parse_int(v); }},
      {"rope_theta", [&](const std::string& v) { c.rope_theta = parse_double(v); }},
      {"rms_norm_eps", [&](const std::string& v) { c.rms_norm_eps = parse_double(v); }},
      {"tie_word_embeddings", [&](const std::string& v) { c.tie_word_embeddings = parse_bool(v); }},
  });
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  return c;
}

ModelConfig read_model_config_json(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": invalid JSON: " + e.what());
  }
  ModelConfig c;
  auto get_int = [&](const char* key, int& out) {
    if (!j.contains(key)) throw std::runtime_error(path + ": missing key '" + key + "'");
    if (!j[key].is_number_integer()) throw std::runtime_error(path + ": key '" + key + "' must be an integer");
    out = j[key].get<int>();
  };
  get_int("vocab_size", c.vocab_size);
  get_int("hidden_size", c.hidden_size);
  get_int("intermediate_size", c.intermediate_size);
  get_int("num_hidden_layers", c.num_layers);
  get_int("num_attention_heads", c.num_heads);
  get_int("num_key_value_heads", c.num_kv_heads);
  get_int("max_position_embeddings", c.max_seq_length);
  if (j.contains("rope_theta")) c.rope_theta = j["rope_theta"].get<double>();
  if (j.contains("rms_norm_eps")) c.rms_norm_eps = j["rms_norm_eps"].get<double>();
  if (j.contains("tie_word_embeddings")) c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  return c;
}

}  // namespace ktl
