#include "core/adapters/lora_config.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "core/base/file_util.h"

namespace ktl {

namespace {

struct TargetNames {
  LoraTarget target;
  const char* short_name;
  const char* module;
  const char* peft;
};
constexpr TargetNames kNames[] = {
    {LoraTarget::kQ, "q", "self_attn.q_proj", "q_proj"},
    {LoraTarget::kK, "k", "self_attn.k_proj", "k_proj"},
    {LoraTarget::kV, "v", "self_attn.v_proj", "v_proj"},
    {LoraTarget::kO, "o", "self_attn.o_proj", "o_proj"},
    {LoraTarget::kGate, "gate", "mlp.gate_proj", "gate_proj"},
    {LoraTarget::kUp, "up", "mlp.up_proj", "up_proj"},
    {LoraTarget::kDown, "down", "mlp.down_proj", "down_proj"},
};

const TargetNames& names(LoraTarget t) {
  return kNames[static_cast<int>(t)];
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

}  // namespace

std::string_view lora_target_short_name(LoraTarget t) {
  return names(t).short_name;
}
std::string_view lora_target_module(LoraTarget t) {
  return names(t).module;
}
std::string_view lora_target_peft_name(LoraTarget t) {
  return names(t).peft;
}

std::vector<LoraTarget> parse_lora_targets(const std::string& list) {
  std::vector<LoraTarget> out;
  auto add = [&](LoraTarget t) {
    for (auto have : out)
      if (have == t) return;
    out.push_back(t);
  };
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (item.empty()) continue;
    if (item == "all" || item == "all-linear") {
      for (auto t : kAllLoraTargets) add(t);
      continue;
    }
    bool found = false;
    for (const auto& n : kNames) {
      if (item == n.short_name || item == n.peft) {
        add(n.target);
        found = true;
      }
    }
    if (!found)
      throw std::invalid_argument("unknown LoRA target '" + item +
                                  "' (choose from q,k,v,o,gate,up,down or all)");
  }
  if (out.empty()) throw std::invalid_argument("no LoRA targets given");
  // Block order, so files and logs do not depend on how the list was spelled.
  std::vector<LoraTarget> ordered;
  for (auto t : kAllLoraTargets)
    for (auto have : out)
      if (have == t) ordered.push_back(t);
  return ordered;
}

bool LoraConfig::targets_has(LoraTarget t) const {
  for (auto have : targets)
    if (have == t) return true;
  return false;
}

void LoraConfig::validate() const {
  if (rank < 0) throw std::invalid_argument("LoRA rank must be >= 0");
  if (rank == 0) return;
  if (!(alpha > 0) || !std::isfinite(alpha)) throw std::invalid_argument("LoRA alpha must be > 0");
  if (!(dropout >= 0 && dropout < 1)) throw std::invalid_argument("LoRA dropout must be in [0, 1)");
  if (targets.empty()) throw std::invalid_argument("LoRA needs at least one target");
}

std::string lora_config_to_peft_json(const LoraConfig& c) {
  nlohmann::json targets = nlohmann::json::array();
  for (auto t : c.targets) targets.push_back(std::string(lora_target_peft_name(t)));
  nlohmann::json j = {
      {"alpha_pattern", nlohmann::json::object()},
      {"auto_mapping", nullptr},
      {"base_model_name_or_path",
       c.base_model.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.base_model)},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"layers_pattern", nullptr},
      {"layers_to_transform", nullptr},
      {"lora_alpha", c.alpha},
      {"lora_dropout", c.dropout},
      {"modules_to_save", nullptr},
      {"peft_type", "LORA"},
      {"r", c.rank},
      {"rank_pattern", nlohmann::json::object()},
      {"revision", nullptr},
      {"target_modules", targets},
      {"task_type", "CAUSAL_LM"},
      {"use_dora", false},
      {"use_rslora", false},
  };
  return j.dump(2) + "\n";
}

LoraConfig lora_config_from_peft_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("adapter_config.json is not JSON: ") + e.what());
  }
  if (!j.is_object()) throw std::invalid_argument("adapter_config.json must be an object");
  auto refuse = [](const std::string& what) {
    throw std::invalid_argument("adapter_config.json: " + what + " is not supported");
  };
  if (j.value("peft_type", std::string("LORA")) != "LORA")
    refuse("peft_type " + j["peft_type"].dump());
  auto truthy = [&](const char* key) {
    return j.contains(key) && !j[key].is_null() && j[key] != false && j[key] != "none" &&
           !(j[key].is_object() && j[key].empty()) && !(j[key].is_array() && j[key].empty());
  };
  for (const char* key : {"use_dora", "use_rslora", "fan_in_fan_out", "rank_pattern",
                          "alpha_pattern", "modules_to_save", "layers_to_transform"}) {
    if (truthy(key)) refuse(std::string("\"") + key + "\"");
  }
  if (j.contains("bias") && j["bias"] != "none") refuse("bias " + j["bias"].dump());
  LoraConfig c;
  if (!j.contains("r") || !j["r"].is_number_integer())
    throw std::invalid_argument("adapter_config.json: \"r\" must be an integer");
  c.rank = j["r"].get<int>();
  c.alpha = j.contains("lora_alpha") && j["lora_alpha"].is_number() ? j["lora_alpha"].get<double>()
                                                                    : 8.0;  // PEFT's default
  c.dropout = j.contains("lora_dropout") && j["lora_dropout"].is_number()
                  ? j["lora_dropout"].get<double>()
                  : 0.0;
  if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string())
    c.base_model = j["base_model_name_or_path"].get<std::string>();
  const auto& tm = j.value("target_modules", nlohmann::json());
  std::string list;
  if (tm.is_string()) {
    list = tm.get<std::string>();
  } else if (tm.is_array()) {
    for (const auto& t : tm) {
      if (!t.is_string())
        throw std::invalid_argument("adapter_config.json: target_modules must be strings");
      list += (list.empty() ? "" : ",") + t.get<std::string>();
    }
  } else {
    throw std::invalid_argument("adapter_config.json: target_modules is missing");
  }
  c.targets = parse_lora_targets(list);
  c.validate();
  if (c.rank == 0) throw std::invalid_argument("adapter_config.json: \"r\" must be > 0");
  return c;
}

std::string peft_tensor_name(const PeftKey& k) {
  return "base_model.model.model.layers." + std::to_string(k.layer) + "." +
         std::string(lora_target_module(k.target)) + (k.is_b ? ".lora_B.weight" : ".lora_A.weight");
}

std::optional<PeftKey> parse_peft_tensor_name(const std::string& name) {
  static const std::string prefix = "base_model.model.model.layers.";
  if (name.rfind(prefix, 0) != 0) return std::nullopt;
  size_t pos = prefix.size(), end = pos;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == pos || end >= name.size() || name[end] != '.' || end - pos > 6) return std::nullopt;
  PeftKey k;
  k.layer = std::stoi(name.substr(pos, end - pos));
  const std::string rest = name.substr(end + 1);
  for (const auto& n : kNames) {
    const std::string m = n.module;
    for (int b = 0; b < 2; ++b) {
      if (rest == m + (b ? ".lora_B.weight" : ".lora_A.weight")) {
        k.target = n.target;
        k.is_b = b == 1;
        return k;
      }
    }
  }
  return std::nullopt;
}

std::pair<int64_t, int64_t> lora_target_shape(const ModelConfig& c, LoraTarget t) {
  const int64_t D = c.hidden_size, Dh = c.head_dim(), F = c.intermediate_size;
  switch (t) {
    case LoraTarget::kQ:
      return {c.num_heads * Dh, D};
    case LoraTarget::kK:
    case LoraTarget::kV:
      return {c.num_kv_heads * Dh, D};
    case LoraTarget::kO:
      return {D, c.num_heads * Dh};
    case LoraTarget::kGate:
    case LoraTarget::kUp:
      return {F, D};
    case LoraTarget::kDown:
      return {D, F};
  }
  throw std::logic_error("bad LoRA target");
}

std::string lora_base_json(const LoraBaseRef& ref) {
  return nlohmann::json{{"base", ref.base}, {"weights_sha256", ref.weights_sha256}}.dump(2) + "\n";
}

LoraBaseRef read_lora_base(const std::string& dir) {
  const std::filesystem::path p = std::filesystem::path(dir) / kLoraBaseFile;
  if (!std::filesystem::exists(p))
    throw std::runtime_error(p.string() +
                             ": missing (not a LoRA training checkpoint; give the "
                             "base checkpoint explicitly)");
  try {
    const auto j = nlohmann::json::parse(read_file(p));
    LoraBaseRef r{j.at("base").get<std::string>(), j.at("weights_sha256").get<std::string>()};
    if (r.base.empty()) throw std::runtime_error("\"base\" is empty");
    return r;
  } catch (const std::exception& e) {
    throw std::runtime_error(p.string() + ": invalid: " + e.what());
  }
}

}  // namespace ktl
