#include "jobs/job_spec.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <functional>
#include <system_error>

#include "core/train/sweep_space.h"
#include "core/train/training_config.h"

namespace ktl::jobs {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

enum class OptType {
  kInputFile,
  kInputDir,
  kInputPath,
  kInputPaths,
  kOutputDir,
  kString,
  kRankCount
};

struct OptionDef {
  const char* key;
  OptType type;
  bool required;
  const char* flag;
};

struct KindDef {
  JobKind kind;
  const char* command;  // ktl subcommand
  std::vector<OptionDef> opts;
  const char* output_key;      // option holding the output dir ("" = none)
  const char* default_subdir;  // under DATA_DIR/jobs/<id>/ when output_key is unset
  bool reports;                // child takes --job-db/--job-id
};

const std::vector<KindDef>& kind_defs() {
  static const std::vector<KindDef> defs = {
      {JobKind::kTrain,
       "train",
       {{"config", OptType::kInputFile, true, "--config"},
        {"model_config", OptType::kInputFile, true, "--model-config"},
        {"data", OptType::kInputDir, true, "--data"},
        {"output_dir", OptType::kOutputDir, false, "--output-dir"},
        {"resume_from", OptType::kInputDir, false, "--resume-from"},
        {"init_from", OptType::kInputDir, false, "--init-from"},
        {"nproc", OptType::kRankCount, false, "--nproc-per-node"}},
       "output_dir",
       "checkpoints",
       true},
      {JobKind::kEval,
       "eval",
       {{"model", OptType::kInputDir, true, "--model"},
        {"data", OptType::kInputDir, true, "--data"},
        {"split", OptType::kString, false, "--split"}},
       "",
       "",
       true},
      {JobKind::kPrepareData,
       "prepare-data",
       {{"input", OptType::kInputPaths, true, "--input"},
        {"output", OptType::kOutputDir, false, "--output"},
        {"tokenizer", OptType::kInputPath, false, "--tokenizer"},
        {"exclude", OptType::kInputPaths, false, "--exclude"}},
       "output",
       "data",
       false},
      {JobKind::kSweep,
       "sweep",
       {{"space", OptType::kInputFile, true, "--space"},
        {"config", OptType::kInputFile, false, "--config"},
        {"model_config", OptType::kInputFile, true, "--model-config"},
        {"data", OptType::kInputDir, true, "--data"},
        {"output_dir", OptType::kOutputDir, false, "--output-dir"}},
       "output_dir",
       "sweep",
       true},
      {JobKind::kSft,
       "sft",
       {{"data", OptType::kInputFile, true, "--data"},
        {"init_from", OptType::kInputDir, false, "--init-from"},
        {"resume_from", OptType::kInputDir, false, "--resume-from"},
        {"config", OptType::kInputFile, false, "--config"},
        {"chat_format", OptType::kString, false, "--chat-format"},
        {"output_dir", OptType::kOutputDir, false, "--output-dir"}},
       "output_dir",
       "checkpoints",
       true},
      {JobKind::kDpo,
       "dpo",
       {{"data", OptType::kInputFile, true, "--data"},
        {"init_from", OptType::kInputDir, true, "--init-from"},
        {"resume_from", OptType::kInputDir, false, "--resume-from"},
        {"config", OptType::kInputFile, false, "--config"},
        {"output_dir", OptType::kOutputDir, false, "--output-dir"}},
       "output_dir",
       "checkpoints",
       true},
      {JobKind::kDistill,
       "distill",
       {{"teacher", OptType::kInputDir, true, "--teacher"},
        {"data", OptType::kInputDir, true, "--data"},
        {"model_config", OptType::kInputFile, false, "--model-config"},
        {"config", OptType::kInputFile, false, "--config"},
        {"output_dir", OptType::kOutputDir, false, "--output-dir"},
        {"resume_from", OptType::kInputDir, false, "--resume-from"},
        {"init_from", OptType::kInputDir, false, "--init-from"}},
       "output_dir",
       "checkpoints",
       true},
      {JobKind::kTrainTokenizer,
       "train-tokenizer",
       {{"input", OptType::kInputPaths, true, "--input"},
        {"output", OptType::kOutputDir, false, "--output"}},
       "output",
       "tokenizer",
       false},
  };
  return defs;
}

const KindDef& kind_def(JobKind k) {
  for (const auto& d : kind_defs())
    if (d.kind == k) return d;
  throw JobSpecError("job kind " + to_string(k) + " has no command");
}

[[noreturn]] void fail(const std::string& field, const std::string& why) {
  throw JobSpecError(field, why);
}

std::string flag_for_key(const std::string& key) {
  std::string f = "--" + key;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

bool valid_override_key(const std::string& k) {
  if (k.empty() || k.size() > 64 || !(k[0] >= 'a' && k[0] <= 'z')) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool safe_override_string(const std::string& s) {
  if (s.size() > 128 || s.find("..") != std::string::npos) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == '+' || c == ':' || c == ',';
  });
}

fs::path canonical_root(const std::string& root) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(root), ec);
  if (ec) p = fs::absolute(root).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p;
}

bool is_under(const fs::path& p, const fs::path& root) {
  auto r = root.begin(), q = p.begin();
  for (; r != root.end(); ++r, ++q)
    if (q == p.end() || *q != *r) return false;
  return true;
}

std::string roots_text(const JobSpecContext& ctx) {
  std::string s = ctx.data_dir;
  for (const auto& r : ctx.allowed_roots) s += ", " + r;
  return s;
}

// Resolves a path option: relative to data_dir, symlinks and ".." resolved, inside a root.
std::string resolve_path(const json& v, const std::string& field, OptType type,
                         const JobSpecContext& ctx) {
  if (!v.is_string()) fail(field, "must be a string path");
  std::string s = v.get<std::string>();
  if (s.empty()) fail(field, "must not be empty");
  if (s.find('\0') != std::string::npos) fail(field, "contains a NUL byte");
  fs::path p(s);
  if (p.is_relative()) p = fs::path(ctx.data_dir) / p;
  std::error_code ec;
  fs::path c = fs::weakly_canonical(fs::absolute(p), ec);
  if (ec) fail(field, "cannot resolve '" + s + "': " + ec.message());
  if (c.filename().empty()) c = c.parent_path();
  if (!path_is_allowed(c.string(), ctx))
    fail(field, "'" + s + "' is outside the allowed roots (" + roots_text(ctx) + ")");
  fs::file_status st = fs::status(c, ec);
  bool exists = fs::exists(st);
  switch (type) {
    case OptType::kInputFile:
      if (!exists) fail(field, "'" + s + "' does not exist");
      if (!fs::is_regular_file(st)) fail(field, "'" + s + "' is not a file");
      break;
    case OptType::kInputDir:
      if (!exists) fail(field, "'" + s + "' does not exist");
      if (!fs::is_directory(st)) fail(field, "'" + s + "' is not a directory");
      break;
    case OptType::kInputPath:
    case OptType::kInputPaths:
      if (!exists) fail(field, "'" + s + "' does not exist");
      break;
    case OptType::kOutputDir:
      if (exists && !fs::is_directory(st)) fail(field, "'" + s + "' exists and is not a directory");
      break;
    case OptType::kString:
      break;
  }
  return c.string();
}

json validate_override(const std::string& field, const json& v) {
  if (v.is_boolean() || v.is_number()) return v;
  if (v.is_string()) {
    if (!safe_override_string(v.get<std::string>()))
      fail(field,
           "string values may use letters, digits and _ - . + : , only (paths go "
           "through the typed path options)");
    return v;
  }
  fail(field, "must be a number, a boolean or a string");
}

std::string value_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

bool is_option_key(const KindDef& def, const std::string& k) {
  return std::any_of(def.opts.begin(), def.opts.end(),
                     [&](const OptionDef& o) { return k == o.key; });
}

// The field a TrainingConfig::validate() message is about: "training config: KEY: why".
std::string invalid_training_key(const std::string& message, std::string* why) {
  const std::string head = "training config: ";
  for (const auto& k : training_config_keys()) {
    const std::string p = head + k + ": ";
    if (message.rfind(p, 0) != 0) continue;
    *why = message.substr(p.size());
    return k;
  }
  *why = message;
  return "";
}

// Data-parallel ranks one train job may start on this machine.
constexpr int64_t kMaxRanks = 64;

// A train stage's overrides, checked as the trainer will: its config file, then each override
// parsed as a training key, then the whole config validated. `opts` is validated already.
// `extra_keys` are the command's own flags that are not training keys (sft: no_pack ...).
void validate_training_overrides(const KindDef& def, const json& opts, const std::string& prefix,
                                 const std::vector<std::string>& extra_keys = {}) {
  TrainingConfig c = def.kind == JobKind::kSft   ? sft_training_defaults()
                     : def.kind == JobKind::kDpo ? dpo_training_defaults()
                                                 : TrainingConfig{};
  if (opts.contains("config")) {
    try {
      load_training_config_into(opts.at("config").get<std::string>(), c);
    } catch (const std::exception& e) {
      fail(prefix + ".config", e.what());
    }
  }
  const TrainingConfig file_cfg = c;
  for (auto it = opts.begin(); it != opts.end(); ++it) {
    if (is_option_key(def, it.key())) continue;
    if (std::find(extra_keys.begin(), extra_keys.end(), it.key()) != extra_keys.end()) continue;
    const std::string field = prefix + "." + it.key();
    const auto& keys = training_config_keys();
    if (std::find(keys.begin(), keys.end(), it.key()) == keys.end())
      fail(field, "is not a training option (a training.yaml key, e.g. max_steps)");
    if (it->is_number_float() && !std::isfinite(it->get<double>()))
      fail(field, "must be a finite number");
    try {
      set_training_key(c, it.key(), value_text(*it));
    } catch (const std::invalid_argument& e) {
      fail(field, e.what());
    }
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    std::string why;
    const std::string key = invalid_training_key(e.what(), &why);
    if (!key.empty() && opts.contains(key)) fail(prefix + "." + key, why);
    // Not an overridden key: the file's own value, or the file and overrides together
    // (min_learning_rate above an overridden learning_rate).
    const bool file_alone = [&] {
      try {
        file_cfg.validate();
        return false;
      } catch (const std::invalid_argument& fe) {
        std::string ignored;
        return invalid_training_key(fe.what(), &ignored) == key;
      }
    }();
    if (file_alone) fail(prefix + ".config", std::string(e.what()) + " (in the config file)");
    fail(prefix, std::string(e.what()) + " (the config file with these overrides)");
  }
  if (def.kind != JobKind::kDistill && c.distill_teacher != TrainingConfig{}.distill_teacher)
    fail(prefix + (opts.contains("distill_teacher") ? ".distill_teacher" : ".config"),
         "distillation runs as the distill job kind (its teacher option)");
  // LoRA trains an adapter on a base checkpoint: refused here rather than by the child.
  if (c.lora_rank > 0 && !opts.contains("init_from") && !opts.contains("resume_from"))
    fail(prefix + (opts.contains("lora_rank") ? ".lora_rank" : ".config"),
         "LoRA (lora_rank > 0) needs init_from: the base checkpoint the adapter trains on");
  // Each rank takes batch_size / nproc rows of every micro-batch.
  if (opts.contains("nproc") && c.batch_size % opts["nproc"].get<int64_t>() != 0)
    fail(prefix + ".nproc", "batch_size " + std::to_string(c.batch_size) +
                                " is not a multiple of nproc " + opts["nproc"].dump());
}

// A dpo stage: its own options (ktl dpo's flags) checked here, every other key as a training key.
const std::vector<std::string> kDpoKeys = {"loss",
                                           "beta",
                                           "orpo_lambda",
                                           "val_fraction",
                                           "rejected_from_model",
                                           "rejected_max_tokens",
                                           "rejected_temperature",
                                           "rejected_top_p"};

void validate_dpo_options(const KindDef& def, const json& out, const std::string& prefix) {
  // `ok` says whether a finite number is in range; `range` says the range in words.
  auto number = [&](const char* key, const char* range, const std::function<bool(double)>& ok) {
    if (!out.contains(key)) return;
    const json& v = out[key];
    if (!v.is_number() || !std::isfinite(v.get<double>()) || !ok(v.get<double>()))
      fail(prefix + "." + key, std::string("must be a number ") + range);
  };
  if (out.contains("loss") && out["loss"] != "dpo" && out["loss"] != "orpo")
    fail(prefix + ".loss", "must be \"dpo\" or \"orpo\"");
  number("beta", "> 0", [](double x) { return x > 0; });
  number("orpo_lambda", ">= 0", [](double x) { return x >= 0; });
  number("val_fraction", "in [0, 1)", [](double x) { return x >= 0 && x < 1; });
  number("rejected_temperature", ">= 0", [](double x) { return x >= 0; });
  number("rejected_top_p", "in (0, 1]", [](double x) { return x > 0 && x <= 1; });
  if (out.contains("rejected_from_model") && !out["rejected_from_model"].is_boolean())
    fail(prefix + ".rejected_from_model", "must be true or false");
  if (out.contains("rejected_max_tokens") && (!out["rejected_max_tokens"].is_number_integer() ||
                                              out["rejected_max_tokens"].get<int64_t>() < 1))
    fail(prefix + ".rejected_max_tokens", "must be an integer >= 1");
  validate_training_overrides(def, out, prefix, kDpoKeys);
}

// A distill stage: alpha, temperature and top_k (ktl distill's flags for the distill_* keys)
// checked here, every other key as a training key.
void validate_distill_options(const KindDef& def, const json& out, const std::string& prefix) {
  auto number = [&](const char* key, const char* range, const std::function<bool(double)>& ok) {
    if (!out.contains(key)) return;
    const json& v = out[key];
    if (!v.is_number() || !std::isfinite(v.get<double>()) || !ok(v.get<double>()))
      fail(prefix + "." + key, std::string("must be a number ") + range);
  };
  number("alpha", "in [0, 1]", [](double x) { return x >= 0 && x <= 1; });
  number("temperature", "in (0, 100]", [](double x) { return x > 0 && x <= 100; });
  if (out.contains("top_k") &&
      (!out["top_k"].is_number_integer() || out["top_k"].get<int64_t>() < 0 ||
       out["top_k"].get<int64_t>() > (int64_t(1) << 24)))
    fail(prefix + ".top_k", "must be an integer >= 0 (0 = the whole vocabulary)");
  for (const char* key :
       {"distill_teacher", "distill_alpha", "distill_temperature", "distill_top_k"})
    if (out.contains(key))
      fail(prefix + "." + key, "is set by the teacher, alpha, temperature and top_k options");
  if (out.contains("lora_rank") && out["lora_rank"] != 0)
    fail(prefix + ".lora_rank", "distillation trains the whole draft (no LoRA)");
  validate_training_overrides(def, out, prefix, {"alpha", "temperature", "top_k"});
}

// A sweep takes no overrides (the space and the config file say everything); its space and
// config files are parsed with the sweep's own rules.
void validate_sweep_options(const json& out, const std::string& prefix) {
  for (auto it = out.begin(); it != out.end(); ++it)
    if (it.key() != "space" && it.key() != "config" && it.key() != "model_config" &&
        it.key() != "data" && it.key() != "output_dir")
      fail(prefix + "." + it.key(),
           "is not a sweep option (space, config, model_config, data, output_dir)");
  try {
    load_sweep_space(out["space"].get<std::string>());
  } catch (const std::exception& e) {
    fail(prefix + ".space", e.what());
  }
  if (out.contains("config")) {
    try {
      load_training_config(out["config"].get<std::string>());
    } catch (const std::exception& e) {
      fail(prefix + ".config", e.what());
    }
  }
}

// Validates the options of a single-command kind. `prefix` names fields in errors.
json validate_options(const KindDef& def, const json& opts, const std::string& prefix,
                      const JobSpecContext& ctx, bool data_optional = false) {
  if (!opts.is_object()) fail(prefix, "must be an object");
  json out = json::object();
  bool default_corpus = opts.contains("default_corpus") && opts["default_corpus"] == true;
  for (const OptionDef& o : def.opts) {
    std::string field = prefix + "." + o.key;
    bool optional_here =
        (data_optional && std::string(o.key) == "data") ||
        (def.kind == JobKind::kPrepareData && default_corpus && std::string(o.key) == "input");
    if (!opts.contains(o.key) || opts[o.key].is_null()) {
      if (o.required && !optional_here) fail(field, "is required");
      continue;
    }
    const json& v = opts[o.key];
    if (o.type == OptType::kRankCount) {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxRanks)
        fail(field, "must be an integer from 1 to " + std::to_string(kMaxRanks));
      out[o.key] = v;
    } else if (o.type == OptType::kString) {
      if (!v.is_string() || !safe_override_string(v.get<std::string>()))
        fail(field, "must be a plain string");
      out[o.key] = v;
    } else if (o.type == OptType::kInputPaths) {
      json list = v.is_array() ? v : json::array({v});
      if (list.empty()) fail(field, "must list at least one path");
      json resolved = json::array();
      for (size_t i = 0; i < list.size(); ++i)
        resolved.push_back(
            resolve_path(list[i], field + "[" + std::to_string(i) + "]", o.type, ctx));
      out[o.key] = resolved;
    } else {
      out[o.key] = resolve_path(v, field, o.type, ctx);
    }
  }
  for (auto it = opts.begin(); it != opts.end(); ++it) {
    const std::string& k = it.key();
    if (is_option_key(def, k)) continue;
    if (!valid_override_key(k) || k == "job_db" || k == "job_id")
      fail(prefix + "." + k, "is not a valid option name (lowercase letters, digits, _)");
    out[k] = validate_override(prefix + "." + k, it.value());
  }
  if (def.kind == JobKind::kTrain) validate_training_overrides(def, out, prefix);
  if (def.kind == JobKind::kSweep) validate_sweep_options(out, prefix);
  if (def.kind == JobKind::kDpo) validate_dpo_options(def, out, prefix);
  if (def.kind == JobKind::kDistill) validate_distill_options(def, out, prefix);
  if (def.kind == JobKind::kSft) {
    if (!out.contains("init_from") && !out.contains("resume_from"))
      fail(prefix + ".init_from", "is required (the checkpoint to fine-tune)");
    validate_training_overrides(def, out, prefix,
                                {"no_pack", "val_fraction", "test_fraction", "split_seed", "format",
                                 "samples"});
  }
  return out;
}

void flatten(const json& j, const std::string& prefix, std::map<std::string, std::string>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string k = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object())
      flatten(*it, k, out);
    else
      out[k] = it->is_string() ? it->get<std::string>() : it->dump();
  }
}

JobStage stage_for(const KindDef& def, const json& opts, const std::string& output_dir,
                   const Job& job, const std::string& db_path, const std::string& resume_from) {
  JobStage st{def.command, {def.command}, ""};
  for (const OptionDef& o : def.opts) {
    std::string key = o.key;
    if (def.output_key == key) continue;
    if (key == "resume_from" && !resume_from.empty()) continue;
    if (!opts.contains(key)) continue;
    const json& v = opts[key];
    if (v.is_array()) {
      for (const auto& e : v) st.args.insert(st.args.end(), {o.flag, value_text(e)});
    } else {
      st.args.insert(st.args.end(), {o.flag, value_text(v)});
    }
  }
  if (*def.output_key) {
    st.output_dir = output_dir;
    const OptionDef* od = nullptr;
    for (const auto& o : def.opts)
      if (def.output_key == std::string(o.key)) od = &o;
    st.args.insert(st.args.end(), {od->flag, output_dir});
  }
  if (!resume_from.empty()) st.args.insert(st.args.end(), {"--resume-from", resume_from});
  for (auto it = opts.begin(); it != opts.end(); ++it) {
    if (!is_option_key(def, it.key()))
      st.args.push_back(flag_for_key(it.key()) + "=" + value_text(it.value()));
  }
  if (def.reports)
    st.args.insert(st.args.end(), {"--job-db", db_path, "--job-id", std::to_string(job.id)});
  return st;
}

fs::path job_dir(const JobSpecContext& ctx, int64_t id) {
  return canonical_root(ctx.data_dir) / "jobs" / std::to_string(id);
}

}  // namespace

bool path_is_allowed(const std::string& path, const JobSpecContext& ctx) {
  fs::path p(path);
  if (!ctx.data_dir.empty() && is_under(p, canonical_root(ctx.data_dir))) return true;
  for (const auto& r : ctx.allowed_roots)
    if (!r.empty() && is_under(p, canonical_root(r))) return true;
  return false;
}

std::string ValidatedSpec::to_json() const {
  json j = {{"kind", jobs::to_string(kind)}, {"name", name}, {"options", options}};
  return j.dump();
}

std::map<std::string, std::string> ValidatedSpec::params() const {
  std::map<std::string, std::string> out;
  flatten(options, "", out);
  return out;
}

ValidatedSpec validate_job_spec(const json& spec, const JobSpecContext& ctx) {
  if (!spec.is_object()) fail("", "the job spec must be a JSON object");
  for (auto it = spec.begin(); it != spec.end(); ++it)
    if (it.key() != "kind" && it.key() != "name" && it.key() != "options")
      fail(it.key(), "unknown field (expected kind, name, options)");
  if (!spec.contains("kind")) fail("kind", "is required");
  if (!spec["kind"].is_string()) fail("kind", "must be a string");
  auto kind = parse_job_kind(spec["kind"].get<std::string>());
  if (!kind)
    fail("kind",
         "unknown job kind '" + spec["kind"].get<std::string>() +
             "' (expected prepare-data, train-tokenizer, train, eval, pipeline, sweep, sft, dpo or "
             "distill)");
  ValidatedSpec v;
  v.kind = *kind;
  v.name = to_string(*kind);
  if (spec.contains("name")) {
    if (!spec["name"].is_string()) fail("name", "must be a string");
    v.name = spec["name"].get<std::string>();
    if (v.name.size() > 200) fail("name", "is longer than 200 characters");
  }
  json opts = spec.contains("options") ? spec["options"] : json::object();
  if (v.kind != JobKind::kPipeline) {
    v.options = validate_options(kind_def(v.kind), opts, "options", ctx);
    return v;
  }
  if (!opts.is_object()) fail("options", "must be an object");
  for (auto it = opts.begin(); it != opts.end(); ++it)
    if (it.key() != "prepare_data" && it.key() != "train")
      fail("options." + it.key(), "unknown pipeline stage (expected prepare_data, train)");
  if (!opts.contains("prepare_data")) fail("options.prepare_data", "is required");
  if (!opts.contains("train")) fail("options.train", "is required");
  v.options = json::object();
  v.options["prepare_data"] = validate_options(kind_def(JobKind::kPrepareData),
                                               opts["prepare_data"], "options.prepare_data", ctx);
  v.options["train"] =
      validate_options(kind_def(JobKind::kTrain), opts["train"], "options.train", ctx, true);
  return v;
}

ValidatedSpec validate_job_spec_text(const std::string& body, const JobSpecContext& ctx) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) fail("", "the request body is not valid JSON");
  return validate_job_spec(j, ctx);
}

std::string default_output_dir(const JobSpecContext& ctx, JobKind kind, int64_t job_id) {
  const char* sub = kind == JobKind::kPipeline ? "checkpoints" : kind_def(kind).default_subdir;
  if (!*sub) return job_dir(ctx, job_id).string();
  return (job_dir(ctx, job_id) / sub).string();
}

std::string job_output_dir(const ValidatedSpec& v, const JobSpecContext& ctx, int64_t job_id) {
  const json* opts = &v.options;
  JobKind k = v.kind;
  if (k == JobKind::kPipeline) {
    opts = &v.options["train"];
    k = JobKind::kTrain;
  }
  const KindDef& d = kind_def(k);
  if (*d.output_key && opts->contains(d.output_key))
    return (*opts)[d.output_key].get<std::string>();
  return default_output_dir(ctx, v.kind, job_id);
}

std::vector<JobStage> build_job_stages(const Job& job, const JobSpecContext& ctx,
                                       const std::string& db_path) {
  json spec = json::parse(job.spec_json, nullptr, false);
  if (spec.is_discarded() || !spec.contains("options"))
    throw JobSpecError("job " + std::to_string(job.id) + " has a corrupt spec");
  // Checked again now: a path may have changed (e.g. a symlink swapped) since submission.
  json opts;
  try {
    opts = validate_job_spec(spec, ctx).options;
  } catch (const JobSpecError& e) {
    throw JobSpecError("job " + std::to_string(job.id) + ": " + e.what());
  }
  auto out_dir = [&](const KindDef& d, const json& o) -> std::string {
    if (!*d.output_key) return "";
    if (o.contains(d.output_key)) return o[d.output_key].get<std::string>();
    return job.output_dir.empty() ? default_output_dir(ctx, d.kind, job.id) : job.output_dir;
  };
  if (job.kind != JobKind::kPipeline) {
    const KindDef& d = kind_def(job.kind);
    return {stage_for(d, opts, out_dir(d, opts), job, db_path, job.resume_from)};
  }
  const KindDef& pd = kind_def(JobKind::kPrepareData);
  const KindDef& td = kind_def(JobKind::kTrain);
  json prep = opts.value("prepare_data", json::object());
  json train = opts.value("train", json::object());
  std::string data_out = prep.contains("output") ? prep["output"].get<std::string>()
                                                 : (job_dir(ctx, job.id) / "data").string();
  if (!train.contains("data")) train["data"] = data_out;
  std::vector<JobStage> stages;
  if (job.resume_from.empty()) stages.push_back(stage_for(pd, prep, data_out, job, db_path, ""));
  stages.push_back(stage_for(td, train, out_dir(td, train), job, db_path, job.resume_from));
  return stages;
}

}  // namespace ktl::jobs
