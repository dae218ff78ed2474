// Multiple-choice tasks scored by likelihood, as lm-evaluation-harness scores them: each choice
// is a continuation of the example's context; the model's summed log-probability of the
// continuation's tokens picks the answer (acc), or that sum divided by the choice's length in
// characters (acc_norm, which stops long answers from losing by length alone).
//
// Built-in tasks (Korean templates, in docs/training-guide.md):
//   nsmc-sentiment  {"text", "label": 0|1}: "{text} 한마디로" -> " 진짜 재미없다" / " 진짜 재밌다"
//   kornli          {"premise", "hypothesis", "label": "entailment"|"neutral"|"contradiction"}:
//                   "{premise}, 맞죠?" -> " 네, {h}" / " 그리고, {h}" / " 아니요, {h}"
//   mc              {"context", "choices": [..], "gold": i}        (KoBEST, HAE-RAE, ... as JSONL)
// Few-shot: k solved examples drawn (seeded) from the same file, never the scored one, each
// rendered as context + gold choice, joined by a blank line before the scored context.
//
// Thread-safety: plain data and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ktl {

struct McExample {
  std::string context;               // the prompt, without the answer
  std::vector<std::string> choices;  // continuations, each starting with its separator (" 긍정")
  int gold = 0;                      // index of the right choice
};

struct McTask {
  std::string name;  // nsmc-sentiment | kornli | mc
  std::vector<McExample> examples;
};

// The built-in and generic task names.
const std::vector<std::string>& mc_task_names();

// Reads a task file; throws std::runtime_error naming the file and line for malformed rows,
// std::invalid_argument for an unknown task name. max_examples > 0 keeps the first N.
McTask load_mc_task(const std::string& name, const std::string& path, int max_examples = 0);

// Where a built-in task's file is by default: $KTL_TASK_DATA/<file>, else
// ../shared/data/ko/<file> from the working directory. Empty for "mc" (it needs a file).
std::string default_task_path(const std::string& name);

// The example's context with k solved examples before it (seeded; never example `index`).
std::string few_shot_context(const McTask& task, size_t index, int shots, uint64_t seed);

struct McScore {
  std::string task;
  int n = 0;
  double acc = 0;       // share of examples whose best summed log-likelihood is the gold choice
  double acc_norm = 0;  // the same with each sum divided by the choice's characters
  int shots = 0;
};

// acc and acc_norm from each example's per-choice summed log-likelihoods (ties: first choice).
McScore score_mc(const McTask& task, const std::vector<std::vector<double>>& loglik, int shots);

}  // namespace ktl
