// JSON schema -> GBNF, for response_format json_schema (and json_object), in the spirit of
// llama.cpp's json-schema-to-grammar: one rule per schema, primitives shared, whitespace bounded
// (`space ::= | " " | "\n" [ \t]{0,20}`) so a model cannot loop in it, and the root may start
// with one space (the first SentencePiece piece often does).
//
// Supported (anything else throws GrammarError naming the keyword; nothing is silently left
// unconstrained):
//   type            object, array, string, number, integer, boolean, null, or an array of them;
//                   without `type`, it is inferred from the keywords used (properties -> object,
//                   items -> array, minLength/pattern/format -> string, minimum -> number);
//                   a schema with none of these is any JSON value
//   object          properties (emitted in the schema's order; required ones mandatory, the
//                   others optional, in order), required (names in properties only),
//                   additionalProperties: false | true/absent (extra keys, any value) | a schema;
//                   extra keys come after the listed ones and never repeat a listed name
//   array           items (one schema), minItems, maxItems
//   string          minLength, maxLength (in JSON characters: an escape counts as one);
//                   format: date (leap days left out), time, date-time, uuid, email (a simple
//                   subset: local@domain.tld); pattern: see schema_pattern.h; pattern and format
//                   cannot be combined with each other or with the lengths
//   integer         minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers, |x| <= 1e15),
//                   compiled to digit-range rules as llama.cpp does
//   number          the same bounds, integer-valued only; a bounded number is an integer in
//                   range, or I.F with I >= 0, [I, I+1] inside the range and 1 to 6 fraction
//                   digits (never negative non-integers, no exponent); unbounded numbers have
//                   at most 16 integer digits and a 1-2 digit exponent
//   enum, const     any JSON values, factored into a prefix trie (10,000 values stay cheap)
//   anyOf, oneOf    alternatives (oneOf as anyOf), with no other constraining sibling
//   allOf           only when at most one member constrains anything
//   $ref            local pointers: "#", "#/$defs/...", "#/definitions/..."; recursion becomes
//                   recursive rules; a reference with no finite instance fails to compile
//   ignored         title, description, $schema, $id, $comment, default, examples, $defs,
//                   definitions
//   boolean schema  true (any value); false is an error
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ktl::grammar {

struct JsonSchemaOptions {
  size_t max_schema_bytes = 1 << 20;  // larger -> GrammarError
  int max_depth = 64;                 // nesting of schemas
  size_t max_enum_values = 10000;
  size_t max_rules = 20000;  // grammar size bound
};

// JSON schema text -> GBNF text. Throws GrammarError naming the keyword for anything unsupported.
std::string json_schema_to_gbnf(const std::string& schema_json, const JsonSchemaOptions& opts = {});
// Any JSON object (response_format json_object).
std::string json_object_gbnf();
// Quote `s` as a GBNF string literal (for the server's tool-call grammar). Throws GrammarError
// when `s` is not valid UTF-8.
std::string gbnf_literal(std::string_view s);

}  // namespace ktl::grammar
