#include "core/model/model_config.h"

#include <nlohmann/json.hpp>

#include <climits>
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
  // Far beyond any model this project trains; keeps num_parameters() and the engine's size
  // arithmetic inside int64.
  req(vocab_size <= (1 << 24), "vocab_size", "must be <= 16777216");
  req(hidden_size <= (1 << 16), "hidden_size", "must be <= 65536");
  req(num_layers <= 4096, "num_layers", "must be <= 4096");
  req(intermediate_size <= (1 << 20), "intermediate_size", "must be <= 1048576");
  req(max_seq_length <= (1 << 24), "max_seq_length", "must be <= 16777216");
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
  load_flat_yaml(
      path,
      {
          {"vocab_size", [&](const std::string& v) { c.vocab_size = parse_int(v); }},
          {"hidden_size", [&](const std::string& v) { c.hidden_size = parse_int(v); }},
          {"num_layers", [&](const std::string& v) { c.num_layers = parse_int(v); }},
          {"num_heads", [&](const std::string& v) { c.num_heads = parse_int(v); }},
          {"num_kv_heads", [&](const std::string& v) { c.num_kv_heads = parse_int(v); }},
          {"intermediate_size", [&](const std::string& v) { c.intermediate_size = parse_int(v); }},
          {"max_seq_length", [&](const std::string& v) { c.max_seq_length = parse_int(v); }},
          {"rope_theta", [&](const std::string& v) { c.rope_theta = parse_double(v); }},
          {"rms_norm_eps", [&](const std::string& v) { c.rms_norm_eps = parse_double(v); }},
          {"tie_word_embeddings",
           [&](const std::string& v) { c.tie_word_embeddings = parse_bool(v); }},
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
  auto wrong = [&](const char* key, const char* what) {
    return std::runtime_error(path + ": key '" + key + "' must be " + what);
  };
  auto get_int = [&](const char* key, int& out) {
    if (!j.contains(key)) throw std::runtime_error(path + ": missing key '" + key + "'");
    const nlohmann::json& v = j[key];
    // get<int>() would silently truncate 4294967297 to 1.
    bool fits = false;
    if (v.is_number_unsigned())
      fits = v.get<uint64_t>() <= INT_MAX;
    else if (v.is_number_integer())
      fits = v.get<int64_t>() >= INT_MIN && v.get<int64_t>() <= INT_MAX;
    if (!fits) throw wrong(key, "an integer in the int range");
    out = v.get<int>();
  };
  auto get_double = [&](const char* key, double& out) {
    if (!j.contains(key)) return;
    if (!j[key].is_number()) throw wrong(key, "a number");
    out = j[key].get<double>();
  };
  get_int("vocab_size", c.vocab_size);
  get_int("hidden_size", c.hidden_size);
  get_int("intermediate_size", c.intermediate_size);
  get_int("num_hidden_layers", c.num_layers);
  get_int("num_attention_heads", c.num_heads);
  get_int("num_key_value_heads", c.num_kv_heads);
  get_int("max_position_embeddings", c.max_seq_length);
  get_double("rope_theta", c.rope_theta);
  get_double("rms_norm_eps", c.rms_norm_eps);
  if (j.contains("tie_word_embeddings")) {
    if (!j["tie_word_embeddings"].is_boolean()) throw wrong("tie_word_embeddings", "true or false");
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  return c;
}

}  // namespace ktl
