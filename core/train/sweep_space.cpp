#include "core/train/sweep_space.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/base/yaml_config.h"

namespace ktl {
namespace {

const std::set<std::string>& model_keys() {
  static const std::set<std::string> k = {"hidden_size", "num_layers", "num_heads", "num_kv_heads",
                                          "intermediate_size"};
  return k;
}

bool is_model_key(const std::string& key) {
  return key.rfind("model.", 0) == 0;
}

void set_model_key(ModelConfig& m, const std::string& key, const std::string& value) {
  const std::string k = key.substr(6);
  if (!model_keys().count(k)) throw std::invalid_argument("unknown model key '" + k + "'");
  const int v = parse_int(value);
  if (k == "hidden_size") m.hidden_size = v;
  if (k == "num_layers") m.num_layers = v;
  if (k == "num_heads") m.num_heads = v;
  if (k == "num_kv_heads") m.num_kv_heads = v;
  if (k == "intermediate_size") m.intermediate_size = v;
}

// Checks one value the way the trial would apply it.
void check_value(const std::string& key, const std::string& value) {
  if (is_model_key(key)) {
    ModelConfig m;
    set_model_key(m, key, value);
    if (parse_int(value) <= 0) throw std::invalid_argument("must be positive");
    return;
  }
  TrainingConfig c;
  set_training_key(c, key, value);
  c.validate();
}

std::string fmt_number(double v, bool integer) {
  if (integer) return std::to_string(int64_t(std::llround(v)));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  std::string s = buf;
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

bool looks_integer(const std::string& s) {
  if (s.empty()) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

SweepParam parse_param(const std::string& key, const YAML::Node& n) {
  SweepParam p;
  p.key = key;
  if (n.IsScalar()) {
    p.values.push_back(n.Scalar());
  } else if (n.IsSequence()) {
    for (const auto& v : n) {
      if (!v.IsScalar()) throw std::invalid_argument("choices must be scalars");
      p.values.push_back(v.Scalar());
    }
    if (p.values.empty()) throw std::invalid_argument("empty list of choices");
  } else if (n.IsMap()) {
    if (!n["min"] || !n["max"]) throw std::invalid_argument("a range needs min and max");
    for (const auto& kv : n) {
      const auto k = kv.first.as<std::string>();
      if (k != "min" && k != "max" && k != "log")
        throw std::invalid_argument("unknown range field '" + k + "' (min, max, log)");
    }
    const std::string lo = n["min"].Scalar(), hi = n["max"].Scalar();
    p.min = parse_double(lo);
    p.max = parse_double(hi);
    p.integer = looks_integer(lo) && looks_integer(hi);
    if (n["log"]) p.log = parse_bool(n["log"].Scalar());
  } else {
    throw std::invalid_argument("expected a value, a list or {min, max, log}");
  }
  return p;
}

// Uniform in [0, 1) from 53 random bits (portable, unlike std::uniform_real_distribution).
double unit(std::mt19937_64& rng) {
  return double(rng() >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

std::vector<int64_t> HalvingSchedule::rungs() const {
  std::vector<int64_t> r;
  for (int64_t s = min_steps; s < max_steps; s *= eta) r.push_back(s);
  r.push_back(max_steps);
  return r;
}

void SweepSpace::validate() const {
  if (trials < 0) throw std::invalid_argument("trials must be >= 0");
  if (method == SearchMethod::kRandom && trials < 1)
    throw std::invalid_argument("trials must be >= 1 for random search");
  if (budget_minutes < 0) throw std::invalid_argument("budget_minutes must be >= 0");
  if (halving.min_steps < 1) throw std::invalid_argument("halving.min_steps must be >= 1");
  if (halving.max_steps < halving.min_steps)
    throw std::invalid_argument("halving.max_steps must be >= halving.min_steps");
  if (halving.eta < 2) throw std::invalid_argument("halving.eta must be >= 2");
  std::set<std::string> seen;
  for (const auto& p : params) {
    auto fail = [&](const std::string& why) {
      throw std::invalid_argument("params." + p.key + ": " + why);
    };
    if (!seen.insert(p.key).second) fail("given twice");
    if (p.key == "max_steps") fail("set by halving.max_steps, not swept");
    if (!is_model_key(p.key) && training_key_from_flag(p.key) != p.key)
      fail("unknown training key (see configs/training.yaml; model keys start with 'model.')");
    try {
      if (p.values.empty()) {
        if (method == SearchMethod::kGrid) fail("a range cannot be a grid axis; give a list");
        if (!(p.min <= p.max)) fail("min must be <= max");
        if (p.log && p.min <= 0) fail("a log range needs min > 0");
        check_value(p.key, fmt_number(p.min, p.integer));
        check_value(p.key, fmt_number(p.max, p.integer));
      }
      for (const auto& v : p.values) check_value(p.key, v);
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      if (what.rfind("params.", 0) == 0) throw;
      fail(what);
    }
  }
}

SweepSpace parse_sweep_space(const std::string& yaml_text, const std::string& name) {
  SweepSpace s;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(name + ": " + e.what());
  }
  if (!root.IsMap()) throw std::runtime_error(name + ": expected a mapping");
  std::string at;
  try {
    for (const auto& kv : root) {
      at = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (at == "method") {
        const std::string m = v.Scalar();
        if (m == "random")
          s.method = SearchMethod::kRandom;
        else if (m == "grid")
          s.method = SearchMethod::kGrid;
        else
          throw std::invalid_argument("expected random or grid, got '" + m + "'");
      } else if (at == "trials") {
        s.trials = parse_int(v.Scalar());
      } else if (at == "seed") {
        s.seed = uint64_t(parse_int64(v.Scalar()));
      } else if (at == "budget_minutes") {
        s.budget_minutes = parse_double(v.Scalar());
      } else if (at == "halving") {
        if (!v.IsMap()) throw std::invalid_argument("expected {min_steps, max_steps, eta}");
        for (const auto& h : v) {
          const auto k = h.first.as<std::string>();
          if (k == "min_steps")
            s.halving.min_steps = parse_int64(h.second.Scalar());
          else if (k == "max_steps")
            s.halving.max_steps = parse_int64(h.second.Scalar());
          else if (k == "eta")
            s.halving.eta = parse_int(h.second.Scalar());
          else
            throw std::invalid_argument("unknown field '" + k + "'");
        }
      } else if (at == "params") {
        if (!v.IsMap()) throw std::invalid_argument("expected a mapping of keys");
        for (const auto& p : v) {
          const auto key = p.first.as<std::string>();
          try {
            s.params.push_back(parse_param(key, p.second));
          } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(key + ": " + e.what());
          }
        }
      } else {
        throw std::invalid_argument(
            "unknown key (method, trials, seed, budget_minutes, halving, params)");
      }
    }
    at.clear();
    s.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(name + ": " + (at.empty() ? "" : "key '" + at + "': ") + e.what());
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(name + ": key '" + at + "': " + e.what());
  }
  return s;
}

SweepSpace load_sweep_space(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_sweep_space(ss.str(), path);
}

std::vector<TrialConfig> generate_trials(const SweepSpace& space) {
  std::vector<TrialConfig> out;
  if (space.method == SearchMethod::kGrid) {
    size_t total = 1;
    for (const auto& p : space.params) total *= p.values.size();
    if (space.trials > 0) total = std::min(total, size_t(space.trials));
    for (size_t i = 0; i < total; ++i) {
      TrialConfig t;
      t.id = int(i);
      size_t rest = i;
      // Row-major: the last param varies fastest.
      for (size_t k = space.params.size(); k-- > 0;) {
        const auto& p = space.params[k];
        t.overrides[p.key] = p.values[rest % p.values.size()];
        rest /= p.values.size();
      }
      out.push_back(std::move(t));
    }
    return out;
  }
  std::mt19937_64 rng(space.seed);
  for (int i = 0; i < space.trials; ++i) {
    TrialConfig t;
    t.id = i;
    for (const auto& p : space.params) {
      const double u = unit(rng);  // drawn for every param, so draws do not shift between kinds
      if (!p.values.empty()) {
        t.overrides[p.key] = p.values[std::min(p.values.size() - 1, size_t(u * p.values.size()))];
      } else if (p.log) {
        t.overrides[p.key] = fmt_number(
            std::exp(std::log(p.min) + u * (std::log(p.max) - std::log(p.min))), p.integer);
      } else {
        t.overrides[p.key] = fmt_number(p.min + u * (p.max - p.min), p.integer);
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

void apply_trial(const TrialConfig& trial, const HalvingSchedule& schedule, TrainingConfig& train,
                 ModelConfig& model) {
  for (const auto& [key, value] : trial.overrides) {
    try {
      if (is_model_key(key))
        set_model_key(model, key, value);
      else
        set_training_key(train, key, value);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("trial " + std::to_string(trial.id) + ": " + key + ": " +
                                  e.what());
    }
  }
  train.max_steps = schedule.max_steps;
  train.validate();
  model.validate();
}

}  // namespace ktl
