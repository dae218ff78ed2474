// JSON-schema `pattern` (a regex) -> a GBNF expression for the characters of a JSON string.
//
// The subset: the pattern must be anchored, ^...$; inside: literal characters, escaped
// metacharacters (\. \( \\ ...), classes [a-z0-9_] and [^...], the shorthands \d \w \s and
// \D \W \S, `.`, groups (...) and (?:...), alternation |, and the quantifiers ? * + {m} {m,}
// {m,n} (a lazy `?` after one is accepted: the language is the same). Rejected: lookaround,
// backreferences, \b, anchors inside, flags, control characters.
//
// The grammar generates raw JSON characters only: a class never yields `"`, `\` or a control
// character (they would need an escape), and a literal `"` or `\` is written as its escape. So
// every generated string matches the pattern; a few strings needing escapes are not generated.
//
// Thread-safety: a pure function. Throws GrammarError("pattern", ...).
#pragma once

#include <string>

namespace ktl::grammar {

std::string pattern_to_gbnf(const std::string& pattern);

}  // namespace ktl::grammar
