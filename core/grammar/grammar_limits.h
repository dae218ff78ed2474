// Size bounds for compiling and matching a grammar. A grammar from an HTTP request is
// untrusted: every loop in the compiler and the matcher is bounded by one of these.
//
// Thread-safety: a plain value.
#pragma once

#include <cstddef>

namespace ktl::grammar {

struct GrammarLimits {
  size_t max_grammar_bytes = 1 << 20;  // GBNF text
  size_t max_rules = 20000;            // after lowering repetitions and classes to rules
  size_t max_elements = 1 << 21;       // symbols over all alternatives
  int max_repetition = 10000;          // m and n of {m,n}
  int max_nesting = 256;               // parentheses depth (the parser recurses on them)
  size_t max_stacks = 10000;           // stacks in one matcher state; beyond it the state is dead
  size_t mask_cache_entries = 1024;    // masks shared by a grammar's matchers (4 KB each at 32k)
};

}  // namespace ktl::grammar
