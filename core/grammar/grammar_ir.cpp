#include "core/grammar/grammar_ir.h"

#include <vector>

#include "core/grammar/grammar_error.h"

namespace ktl::grammar {

namespace {

// nullable[r]: r can match the empty string. A fixed point, linear passes over the grammar.
std::vector<bool> nullable_rules(const GrammarIr& g) {
  std::vector<bool> nullable(g.rules.size(), false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < g.rules.size(); ++r) {
      if (nullable[r]) continue;
      for (const auto& alt : g.rules[r]) {
        bool all = true;
        for (const Elem& e : alt) {
          if (e.type != ElemType::kRule || !nullable[e.value]) {
            all = false;
            break;
          }
        }
        if (all) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  return nullable;
}

// Left recursion: a cycle in "r may start with s" (through nullable prefixes). The stack
// matcher would expand such a rule forever, so it is an error. Iterative DFS: deep grammars
// cannot overflow the call stack.
void check_left_recursion(const GrammarIr& g) {
  const std::vector<bool> nullable = nullable_rules(g);
  const size_t n = g.rules.size();
  std::vector<std::vector<int>> first(n);
  for (size_t r = 0; r < n; ++r) {
    for (const auto& alt : g.rules[r]) {
      for (const Elem& e : alt) {
        if (e.type != ElemType::kRule) break;
        first[r].push_back(e.value);
        if (!nullable[e.value]) break;
      }
    }
  }
  std::vector<uint8_t> color(n, 0);  // 0 new, 1 on the DFS path, 2 done
  std::vector<std::pair<int, size_t>> stack;
  for (size_t s = 0; s < n; ++s) {
    if (color[s]) continue;
    stack.emplace_back(static_cast<int>(s), 0);
    color[s] = 1;
    while (!stack.empty()) {
      auto& [r, i] = stack.back();
      if (i == first[r].size()) {
        color[r] = 2;
        stack.pop_back();
        continue;
      }
      const int next = first[r][i++];
      if (color[next] == 1) {
        throw GrammarError("left-recursion", "grammar: rule '" + g.names[next] +
                                                 "' is left-recursive (it can start with "
                                                 "itself); rewrite it with repetition");
      }
      if (color[next] == 0) {
        color[next] = 1;
        stack.emplace_back(next, 0);
      }
    }
  }
}

}  // namespace

void validate_and_prune(GrammarIr* g) {
  check_left_recursion(*g);
  // productive[r]: r has a finite sentence. Alternatives using unproductive rules can never
  // finish, so a model that entered one could never stop: they are removed.
  const size_t n = g->rules.size();
  std::vector<bool> productive(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (productive[r]) continue;
      for (const auto& alt : g->rules[r]) {
        bool ok = true;
        for (const Elem& e : alt) {
          if (e.type == ElemType::kRule && !productive[e.value]) {
            ok = false;
            break;
          }
        }
        if (ok) {
          productive[r] = changed = true;
          break;
        }
      }
    }
  }
  if (!productive[g->root]) {
    throw GrammarError("",
                       "grammar: rule 'root' has no finite sentence (every alternative "
                       "recurses forever)");
  }
  for (size_t r = 0; r < n; ++r) {
    auto& alts = g->rules[r];
    std::vector<std::vector<Elem>> kept;
    for (auto& alt : alts) {
      bool ok = true;
      for (const Elem& e : alt) {
        if (e.type == ElemType::kRule && !productive[e.value]) ok = false;
      }
      if (ok) kept.push_back(std::move(alt));
    }
    alts = std::move(kept);
  }
}

}  // namespace ktl::grammar
