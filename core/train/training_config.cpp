#include "core/train/training_config.h"

#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>

#include "core/base/yaml_config.h"

namespace ktl {
namespace {

struct KeyDef {
  std::string name;
  std::function<void(TrainingConfig&, const std::string&)> set;
  std::function<std::string(const TrainingConfig&)> get;
};

std::string fmt_double(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  std::string s = os.str();
  // Keep it a float in YAML so a reader never mistakes it for an integer.
  if (s.find_first_of(".eE") == std::string::npos && s.find("inf") == std::string::npos &&
      s.find("nan") == std::string::npos)
    s += ".0";
  return s;
}

#define KTL_INT(field)                                                                           \
  KeyDef {                                                                                       \
#field, [](TrainingConfig & c,                                                               \
               const std::string&                                                                \
                   v) { c.field = parse_int(v); }, [](const TrainingConfig&                      \
                                                          c) { return std::to_string(c.field); } \
  }
#define KTL_INT64(field)                                                                           \
  KeyDef {                                                                                         \
#field, [](TrainingConfig & c,                                                                 \
               const std::string&                                                                  \
                   v) { c.field = parse_int64(v); }, [](const TrainingConfig&                      \
                                                            c) { return std::to_string(c.field); } \
  }
#define KTL_DOUBLE(field)                                                                       \
  KeyDef {                                                                                      \
#field, [](TrainingConfig & c,                                                              \
               const std::string&                                                               \
                   v) { c.field = parse_double(v); }, [](const TrainingConfig&                  \
                                                             c) { return fmt_double(c.field); } \
  }
#define KTL_BOOL(field)                                                             \
  KeyDef {                                                                          \
#field, [](TrainingConfig& c, const std::string& v) { c.field = parse_bool(v); }, \
        [](const TrainingConfig& c) { return std::string(c.field ? "true" : "false"); } \
  }

// Strings are written quoted, so "" and paths with ':' read back as written.
std::string quote(const std::string& v) {
  std::string out = "\"";
  for (char ch : v) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

#define KTL_STRING(field)                                                                      \
  KeyDef {                                                                                     \
#field, [](TrainingConfig & c,                                                             \
               const std::string&                                                              \
                   v) { c.field = v; }, [](const TrainingConfig& c) { return quote(c.field); } \
  }

const std::vector<KeyDef>& key_defs() {
  static const std::vector<KeyDef> defs = {
      KTL_INT(batch_size),
      KTL_INT(gradient_accumulation_steps),
      KTL_INT(max_seq_length),
      KTL_DOUBLE(learning_rate),
      KTL_DOUBLE(min_learning_rate),
      KTL_INT(warmup_steps),
      KTL_INT64(max_steps),
      KTL_DOUBLE(max_minutes),
      KTL_DOUBLE(weight_decay),
      KTL_DOUBLE(adam_beta1),
      KTL_DOUBLE(adam_beta2),
      KTL_DOUBLE(adam_eps),
      KTL_DOUBLE(grad_clip),
      KTL_INT(save_steps),
      KTL_INT(eval_steps),
      KTL_INT(eval_batches),
      KTL_INT(log_steps),
      KTL_INT(sample_steps),
      KTL_INT(keep_last_checkpoints),
      KTL_INT(early_stopping_patience),
      KTL_BOOL(fp16),
      KeyDef{"bf16",
             [](TrainingConfig& c, const std::string& v) {
               if (v == "auto") {
                 c.bf16 = "auto";
                 return;
               }
               c.bf16 = parse_bool(v) ? "true" : "false";  // throws on anything else
             },
             [](const TrainingConfig& c) { return c.bf16; }},
      KTL_BOOL(gradient_checkpointing),
      KTL_INT64(seed),
      KeyDef{"device",
             [](TrainingConfig& c, const std::string& v) {
               if (v != "auto" && v != "cpu" && v != "cuda" && v != "mps")
                 throw std::invalid_argument("expected auto, cpu, cuda or mps, got '" + v + "'");
               c.device = v;
             },
             [](const TrainingConfig& c) { return c.device; }},
      KTL_INT(num_threads),
      KTL_INT(overfit_batches),
      KTL_STRING(task_eval),
      KTL_STRING(task_data_dir),
      KTL_INT(task_eval_examples),
      KTL_INT(task_eval_shots),
      KTL_INT(lora_rank),
      KTL_DOUBLE(lora_alpha),
      KTL_DOUBLE(lora_dropout),
      KTL_STRING(lora_targets),
      KTL_STRING(distill_teacher),
      KTL_DOUBLE(distill_alpha),
      KTL_DOUBLE(distill_temperature),
      KTL_INT(distill_top_k),
  };
  return defs;
}

#undef KTL_INT
#undef KTL_INT64
#undef KTL_DOUBLE
#undef KTL_BOOL
#undef KTL_STRING

}  // namespace

const std::vector<std::string>& training_config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& d : key_defs()) k.push_back(d.name);
    return k;
  }();
  return keys;
}

void set_training_key(TrainingConfig& c, const std::string& key, const std::string& value) {
  for (const auto& d : key_defs()) {
    if (d.name != key) continue;
    try {
      d.set(c, value);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("key '" + key + "': " + e.what());
    }
    return;
  }
  throw std::invalid_argument("unknown training key '" + key + "'");
}

void load_training_config_into(const std::string& path, TrainingConfig& base) {
  std::map<std::string, ConfigSetter> setters;
  for (const auto& d : key_defs()) {
    auto set = d.set;
    setters[d.name] = [&base, set](const std::string& v) { set(base, v); };
  }
  load_flat_yaml(path, setters);
}

TrainingConfig load_training_config(const std::string& path) {
  TrainingConfig c;
  load_training_config_into(path, c);
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  return c;
}

std::string TrainingConfig::to_yaml() const {
  std::ostringstream os;
  for (const auto& d : key_defs()) os << d.name << ": " << d.get(*this) << "\n";
  return os.str();
}

void TrainingConfig::validate() const {
  auto req = [](bool ok, const char* key, const std::string& why) {
    if (!ok) throw std::invalid_argument(std::string("training config: ") + key + ": " + why);
  };
  req(batch_size > 0, "batch_size", "must be positive");
  req(gradient_accumulation_steps > 0, "gradient_accumulation_steps", "must be positive");
  req(max_seq_length > 1, "max_seq_length", "must be at least 2");
  req(learning_rate > 0, "learning_rate", "must be positive");
  req(min_learning_rate >= 0 && min_learning_rate <= learning_rate, "min_learning_rate",
      "must be between 0 and learning_rate");
  req(warmup_steps >= 0, "warmup_steps", "must be >= 0");
  req(max_steps > 0, "max_steps", "must be positive");
  req(max_minutes >= 0, "max_minutes", "must be >= 0 (0 = no time budget)");
  req(weight_decay >= 0, "weight_decay", "must be >= 0");
  req(adam_beta1 >= 0 && adam_beta1 < 1, "adam_beta1", "must be in [0, 1)");
  req(adam_beta2 >= 0 && adam_beta2 < 1, "adam_beta2", "must be in [0, 1)");
  req(adam_eps > 0, "adam_eps", "must be positive");
  req(grad_clip >= 0, "grad_clip", "must be >= 0 (0 = off)");
  req(save_steps >= 0, "save_steps", "must be >= 0");
  req(eval_steps >= 0, "eval_steps", "must be >= 0");
  req(eval_batches > 0, "eval_batches", "must be positive");
  req(log_steps > 0, "log_steps", "must be positive");
  req(sample_steps >= 0, "sample_steps", "must be >= 0");
  req(keep_last_checkpoints > 0, "keep_last_checkpoints", "must be positive");
  req(early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0");
  req(!(fp16 && bf16 == "true"), "fp16", "fp16 and bf16 cannot both be true");
  req(num_threads >= 0, "num_threads", "must be >= 0 (0 = every core)");
  req(overfit_batches >= 0, "overfit_batches", "must be >= 0");
  req(task_eval_examples >= 0, "task_eval_examples", "must be >= 0 (0 = all)");
  req(task_eval_shots >= 0 && task_eval_shots <= 32, "task_eval_shots", "must be in [0, 32]");
  try {
    parse_task_eval(*this);
  } catch (const std::invalid_argument& e) {
    req(false, "task_eval", e.what());
  }
  req(lora_rank >= 0, "lora_rank", "must be >= 0 (0 = no LoRA)");
  req(lora_alpha > 0, "lora_alpha", "must be positive");
  req(lora_dropout >= 0 && lora_dropout < 1, "lora_dropout", "must be in [0, 1)");
  try {
    parse_lora_targets(lora_targets);
  } catch (const std::invalid_argument& e) {
    req(false, "lora_targets", e.what());
  }
  req(distill_alpha >= 0 && distill_alpha <= 1, "distill_alpha", "must be in [0, 1]");
  req(distill_temperature > 0 && distill_temperature <= 100, "distill_temperature",
      "must be in (0, 100]");
  req(distill_top_k >= 0, "distill_top_k", "must be >= 0 (0 = the whole vocabulary)");
}

LoraConfig lora_config_of(const TrainingConfig& c) {
  LoraConfig l;
  l.rank = c.lora_rank;
  l.alpha = c.lora_alpha;
  l.dropout = c.lora_dropout;
  l.targets = parse_lora_targets(c.lora_targets);
  return l;
}

std::vector<std::pair<std::string, std::string>> parse_task_eval(const TrainingConfig& c) {
  std::vector<std::pair<std::string, std::string>> out;
  std::stringstream ss(c.task_eval);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    if (a == std::string::npos) continue;
    item = item.substr(a, b - a + 1);
    if (item.rfind("mc:", 0) == 0) {
      if (item.size() == 3) throw std::invalid_argument("'mc:' needs a file (mc:tasks.jsonl)");
      out.emplace_back("mc", item.substr(3));
    } else if (item == "nsmc-sentiment" || item == "kornli") {
      const char* file = item == "kornli" ? "kornli-dev.jsonl" : "nsmc-sentiment-dev.jsonl";
      out.emplace_back(item, c.task_data_dir.empty() ? "" : c.task_data_dir + "/" + file);
    } else {
      throw std::invalid_argument("unknown task '" + item +
                                  "' (nsmc-sentiment, kornli or mc:FILE.jsonl)");
    }
  }
  return out;
}

std::string training_key_from_flag(const std::string& flag) {
  std::string k = flag;
  for (char& ch : k)
    if (ch == '-') ch = '_';
  for (const auto& name : training_config_keys())
    if (name == k) return k;
  return "";
}

TrainingConfig sft_training_defaults() {
  TrainingConfig c;
  c.learning_rate = 1e-4;
  c.min_learning_rate = 1e-5;
  c.warmup_steps = 20;
  c.max_steps = 300;
  c.weight_decay = 0.0;
  c.save_steps = 100;
  c.eval_steps = 50;
  c.sample_steps = 100;
  return c;
}

TrainingConfig lora_sft_training_defaults() {
  TrainingConfig c = sft_training_defaults();
  c.learning_rate = 3e-3;
  c.min_learning_rate = 3e-4;
  c.gradient_checkpointing = true;
  return c;
}

TrainingConfig dpo_training_defaults() {
  TrainingConfig c;
  c.learning_rate = 5e-6;
  c.min_learning_rate = 5e-7;
  c.warmup_steps = 10;
  c.max_steps = 200;
  c.weight_decay = 0.0;
  c.save_steps = 100;
  c.eval_steps = 50;
  c.sample_steps = 0;
  return c;
}

}  // namespace ktl
