// The one exception of core/grammar: a grammar or JSON schema that cannot be compiled.
//
// `keyword` names the JSON-schema keyword ("pattern", "allOf") or GBNF construct at fault, so
// the server can answer 400 with a precise message; "" when there is none (limits, syntax).
//
// Thread-safety: a plain value.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace ktl::grammar {

struct GrammarError : std::invalid_argument {
  GrammarError(std::string keyword_, const std::string& message)
      : std::invalid_argument(message), keyword(std::move(keyword_)) {}
  std::string keyword;  // the JSON-schema keyword / GBNF construct at fault ("" if none)
};

}  // namespace ktl::grammar
