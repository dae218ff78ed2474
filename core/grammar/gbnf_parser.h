// GBNF (llama.cpp's grammar format) -> GrammarIr.
//
// The subset:
//   rule        name ::= alternatives          names: [a-zA-Z0-9_-]+; the start rule is `root`
//   alternatives  seq | seq | ...             `|` may start a continuation line
//   sequence    items separated by spaces; a newline ends it outside parentheses
//   "text"      literal; escapes \n \t \r \\ \" \[ \] \- \/ \' \xHH \uHHHH \UHHHHHHHH
//               (\x, \u, \U name a code point, encoded as UTF-8)
//   [a-z]       class of code points, ranges and single chars, same escapes; [^...] negates
//   .           any code point
//   ( ... )     group
//   x? x* x+    optional, any number, at least one
//   x{m} x{m,} x{m,n}   bounded repetition (m, n <= GrammarLimits::max_repetition)
//   # comment   to the end of the line
// Not supported: token references (<...>, !<...>), anything else llama.cpp added later.
// Errors (GrammarError, with line:col): syntax, a rule defined twice, an undefined rule, no
// `root`, left recursion, a root without a finite sentence, any GrammarLimits bound.
//
// Thread-safety: a pure function.
#pragma once

#include <string_view>

#include "core/grammar/grammar_ir.h"
#include "core/grammar/grammar_limits.h"

namespace ktl::grammar {

GrammarIr parse_gbnf(std::string_view text, const GrammarLimits& limits = {});

}  // namespace ktl::grammar
