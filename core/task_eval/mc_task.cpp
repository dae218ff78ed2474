#include "core/task_eval/mc_task.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "core/base/utf8_util.h"

namespace ktl {
namespace {

using nlohmann::json;

std::runtime_error bad_row(const std::string& path, int line, const std::string& why) {
  return std::runtime_error(path + ":" + std::to_string(line) + ": " + why);
}

std::string get_text(const json& j, const char* key, const std::string& path, int line) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    throw bad_row(path, line, std::string("'") + key + "' must be a string");
  return it->get<std::string>();
}

McExample nsmc_example(const json& j, const std::string& path, int line) {
  McExample e;
  // Chosen on half of the dev set among 12 candidates, the same on two models, and checked on the
  // other half (docs/training-guide.md): a phrase the reviews use, not a one-word label.
  e.context = get_text(j, "text", path, line) + " 한마디로";
  e.choices = {" 진짜 재미없다", " 진짜 재밌다"};
  auto it = j.find("label");
  if (it == j.end() || !it->is_number_integer() || (*it != 0 && *it != 1))
    throw bad_row(path, line, "'label' must be 0 or 1");
  e.gold = it->get<int>();
  return e;
}

McExample kornli_example(const json& j, const std::string& path, int line) {
  McExample e;
  // lm-evaluation-harness's XNLI form: the hypothesis is part of each choice.
  std::string premise = get_text(j, "premise", path, line);
  while (!premise.empty() && (premise.back() == '.' || premise.back() == ' ')) premise.pop_back();
  const std::string h = get_text(j, "hypothesis", path, line);
  e.context = premise + ", 맞죠?";
  e.choices = {" 네, " + h, " 그리고, " + h, " 아니요, " + h};
  const std::string label = get_text(j, "label", path, line);
  if (label == "entailment")
    e.gold = 0;
  else if (label == "neutral")
    e.gold = 1;
  else if (label == "contradiction")
    e.gold = 2;
  else
    throw bad_row(path, line, "'label' must be entailment, neutral or contradiction");
  return e;
}

McExample generic_example(const json& j, const std::string& path, int line) {
  McExample e;
  e.context = get_text(j, "context", path, line);
  auto ch = j.find("choices");
  if (ch == j.end() || !ch->is_array() || ch->size() < 2)
    throw bad_row(path, line, "'choices' must be an array of at least 2 strings");
  for (const auto& c : *ch) {
    if (!c.is_string() || c.get<std::string>().empty())
      throw bad_row(path, line, "every choice must be a non-empty string");
    e.choices.push_back(c.get<std::string>());
  }
  auto g = j.find("gold");
  if (g == j.end() || !g->is_number_integer() || *g < 0 || *g >= static_cast<int>(e.choices.size()))
    throw bad_row(path, line, "'gold' must index 'choices'");
  e.gold = g->get<int>();
  return e;
}

}  // namespace

const std::vector<std::string>& mc_task_names() {
  static const std::vector<std::string> k = {"nsmc-sentiment", "kornli", "mc"};
  return k;
}

std::string default_task_path(const std::string& name) {
  const char* file = name == "nsmc-sentiment" ? "nsmc-sentiment-dev.jsonl"
                     : name == "kornli"       ? "kornli-dev.jsonl"
                                              : nullptr;
  if (!file) return "";
  if (const char* dir = std::getenv("KTL_TASK_DATA"))
    return (std::filesystem::path(dir) / file).string();
  return (std::filesystem::path("..") / "shared" / "data" / "ko" / file).string();
}

McTask load_mc_task(const std::string& name, const std::string& path, int max_examples) {
  McExample (*parse)(const json&, const std::string&, int) = name == "nsmc-sentiment" ? nsmc_example
                                                             : name == "kornli" ? kornli_example
                                                             : name == "mc"     ? generic_example
                                                                                : nullptr;
  if (!parse)
    throw std::invalid_argument("unknown task '" + name + "' (nsmc-sentiment, kornli or mc)");
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read task data " + path);
  McTask t;
  t.name = name;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      throw bad_row(path, n, std::string("not JSON: ") + e.what());
    }
    if (!j.is_object()) throw bad_row(path, n, "each line must be a JSON object");
    t.examples.push_back(parse(j, path, n));
    if (max_examples > 0 && static_cast<int>(t.examples.size()) >= max_examples) break;
  }
  if (t.examples.empty()) throw std::runtime_error(path + " has no examples");
  return t;
}

std::string few_shot_context(const McTask& task, size_t index, int shots, uint64_t seed) {
  const McExample& e = task.examples[index];
  if (shots <= 0 || task.examples.size() < 2) return e.context;
  std::mt19937_64 rng(seed + index);
  std::vector<size_t> pool;
  for (size_t i = 0; i < task.examples.size(); ++i)
    if (i != index) pool.push_back(i);
  std::string out;
  for (int k = 0; k < shots && !pool.empty(); ++k) {
    const size_t pick = rng() % pool.size();
    const McExample& s = task.examples[pool[pick]];
    out += s.context + s.choices[s.gold] + "\n\n";
    pool[pick] = pool.back();
    pool.pop_back();
  }
  return out + e.context;
}

McScore score_mc(const McTask& task, const std::vector<std::vector<double>>& loglik, int shots) {
  if (loglik.size() != task.examples.size())
    throw std::invalid_argument("score_mc: one log-likelihood list per example");
  McScore s;
  s.task = task.name;
  s.shots = shots;
  s.n = static_cast<int>(loglik.size());
  int right = 0, right_norm = 0;
  for (size_t i = 0; i < loglik.size(); ++i) {
    const McExample& e = task.examples[i];
    if (loglik[i].size() != e.choices.size())
      throw std::invalid_argument("score_mc: one log-likelihood per choice");
    size_t best = 0, best_norm = 0;
    for (size_t c = 1; c < e.choices.size(); ++c) {
      if (loglik[i][c] > loglik[i][best]) best = c;
      const double a =
          loglik[i][c] / std::max(1, static_cast<int>(utf8::count_chars(e.choices[c])));
      const double b = loglik[i][best_norm] /
                       std::max(1, static_cast<int>(utf8::count_chars(e.choices[best_norm])));
      if (a > b) best_norm = c;
    }
    right += static_cast<int>(best) == e.gold;
    right_norm += static_cast<int>(best_norm) == e.gold;
  }
  s.acc = s.n ? double(right) / s.n : 0;
  s.acc_norm = s.n ? double(right_norm) / s.n : 0;
  return s;
}

}  // namespace ktl
