#include "core/grammar/json_schema_compiler.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/grammar/grammar_error.h"
#include "core/grammar/int_range_gbnf.h"
#include "core/grammar/schema_pattern.h"
#include "core/grammar/utf8_ranges.h"

namespace ktl::grammar {

namespace {

using json = nlohmann::ordered_json;  // keeps the order of "properties"

// A JSON string character: anything but `"`, `\` and controls, or an escape. \u escapes are
// restricted to non-surrogates or a valid high+low pair, so every string parses.
const char* const kPrimitives[][2] = {
    {"space", "| \" \" | \"\\n\" [ \\t]{0,20}"},
    {"hex", "[0-9a-fA-F]"},
    {"char",
     "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-CeEfF] hex hex hex | "
     "[dD] [0-7] hex hex | [dD] [89abAB] hex hex \"\\\\u\" [dD] [c-fC-F] hex hex))"},
    {"string", "\"\\\"\" char* \"\\\"\" space"},
    {"integral-part", "[0] | [1-9] [0-9]{0,15}"},
    {"integer", "\"-\"? integral-part space"},
    {"number", "\"-\"? integral-part (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})? space"},
    {"boolean", "(\"true\" | \"false\") space"},
    {"null", "\"null\" space"},
    {"value", "object | array | string | number | boolean | null"},
    {"object",
     "\"{\" space (string \":\" space value (\",\" space string \":\" space value)*)? \"}\" "
     "space"},
    {"array", "\"[\" space (value (\",\" space value)*)? \"]\" space"},
    {"date",
     "[0-9]{4} \"-\" ((\"0\" [13578] | \"1\" [02]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])"
     " | (\"0\" [469] | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\")"
     " | \"02-\" (\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]))"},
    {"time",
     "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? "
     "(\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"},
    {"date-time", "date \"T\" time"},
    {"uuid", "hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}"},
    {"email",
     "[a-zA-Z0-9_+-]{1,32} (\".\" [a-zA-Z0-9_+-]{1,32}){0,3} \"@\" [a-zA-Z0-9-]{1,32} "
     "(\".\" [a-zA-Z0-9-]{1,32}){1,3}"},
};

// Which primitives each one uses (emitted with it).
const std::multimap<std::string, std::string> kDeps = {
    {"char", "hex"},       {"string", "char"},
    {"string", "space"},   {"integer", "integral-part"},
    {"integer", "space"},  {"number", "integral-part"},
    {"number", "space"},   {"boolean", "space"},
    {"null", "space"},     {"value", "object"},
    {"value", "array"},    {"value", "string"},
    {"value", "number"},   {"value", "boolean"},
    {"value", "null"},     {"object", "string"},
    {"object", "value"},   {"object", "space"},
    {"array", "value"},    {"array", "space"},
    {"date-time", "date"}, {"date-time", "time"},
    {"uuid", "hex"},
};

const std::set<std::string> kAnnotations = {"title",    "description", "$schema",
                                            "$id",      "$comment",    "default",
                                            "examples", "$defs",       "definitions"};
const std::set<std::string> kKnown = {"type",
                                      "properties",
                                      "required",
                                      "additionalProperties",
                                      "items",
                                      "enum",
                                      "const",
                                      "anyOf",
                                      "oneOf",
                                      "allOf",
                                      "minItems",
                                      "maxItems",
                                      "minimum",
                                      "maximum",
                                      "exclusiveMinimum",
                                      "exclusiveMaximum",
                                      "minLength",
                                      "maxLength",
                                      "pattern",
                                      "format",
                                      "$ref"};
const std::set<std::string> kObjectWords = {"properties", "required", "additionalProperties"};
const std::set<std::string> kArrayWords = {"items", "minItems", "maxItems"};
const std::set<std::string> kStringWords = {"minLength", "maxLength", "pattern", "format"};
const std::set<std::string> kNumberWords = {"minimum", "maximum", "exclusiveMinimum",
                                            "exclusiveMaximum"};

[[noreturn]] void fail(const std::string& keyword, const std::string& msg) {
  throw GrammarError(keyword, "json_schema: " + msg);
}

// A trie of texts by code point (node 0 is the root), for literal alternatives factored by
// their common prefixes. Invalid UTF-8 fails naming `keyword`.
struct TrieNode {
  std::map<uint32_t, int> kids;
  bool end = false;  // a text ends here
};

std::vector<TrieNode> codepoint_trie(const std::vector<std::string>& texts, const char* keyword) {
  std::vector<TrieNode> nodes(1);
  for (const auto& t : texts) {
    int n = 0;
    for (size_t i = 0; i < t.size();) {
      uint32_t cp;
      if (!decode_utf8(t, &i, &cp))
        fail(keyword, std::string(keyword) + ": text is not valid UTF-8");
      auto it = nodes[n].kids.find(cp);
      if (it == nodes[n].kids.end()) {
        nodes.emplace_back();
        it = nodes[n].kids.emplace(cp, static_cast<int>(nodes.size()) - 1).first;
      }
      n = it->second;
    }
    nodes[n].end = true;
  }
  return nodes;
}

bool has_any(const json& s, const std::set<std::string>& words) {
  for (const auto& w : words) {
    if (s.contains(w)) return true;
  }
  return false;
}

// True when the schema constrains nothing (only annotations).
bool is_trivial(const json& s) {
  if (s.is_boolean()) return s.get<bool>();
  if (!s.is_object()) return false;
  for (auto it = s.begin(); it != s.end(); ++it) {
    if (!kAnnotations.count(it.key())) return false;
  }
  return true;
}

class SchemaConverter {
 public:
  SchemaConverter(const json& root, const JsonSchemaOptions& opts) : root_(root), opts_(opts) {}

  std::string convert() {
    const std::string body = visit(root_, "root-value", 0);
    add_rule_named("root", "\" \"? " + body);
    return render();
  }

  std::string any_object() {
    use("object");
    add_rule_named("root", "\" \"? object");
    return render();
  }

 private:
  // --- rules ---
  void use(const std::string& prim) {
    if (!used_.insert(prim).second) return;
    for (const auto& p : kPrimitives) {
      if (prim == p[0]) add_rule_named(prim, p[1]);
    }
    auto range = kDeps.equal_range(prim);
    for (auto it = range.first; it != range.second; ++it) use(it->second);
  }

  void add_rule_named(const std::string& name, const std::string& body) {
    if (!bodies_.count(name)) order_.push_back(name);
    bodies_[name] = body;
    if (bodies_.size() > opts_.max_rules) {
      fail("", "schema needs more than " + std::to_string(opts_.max_rules) + " rules");
    }
  }

  // A fresh rule name from a hint (ASCII letters, digits and '-' kept).
  std::string fresh_name(const std::string& hint) {
    std::string base;
    for (char c : hint) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      base += ok ? c : '-';
    }
    if (base.size() > 40) base.resize(40);
    if (base.empty()) base = "r";
    // A counter per base name keeps this O(1) for thousands of siblings.
    std::string name = base;
    int& next = name_counter_[base];
    while (bodies_.count(name) || used_.count(name) || is_primitive(name)) {
      name = base + "-" + std::to_string(++next);
    }
    bodies_[name] = "";  // reserved
    order_.push_back(name);
    return name;
  }

  static bool is_primitive(const std::string& name) {
    for (const auto& p : kPrimitives) {
      if (name == p[0]) return true;
    }
    return name == "root";
  }

  std::string add_rule(const std::string& hint, const std::string& body) {
    const std::string name = fresh_name(hint);
    add_rule_named(name, body);
    return name;
  }

  std::string render() const {
    std::string out;
    for (const auto& n : order_) out += n + " ::= " + bodies_.at(n) + "\n";
    return out;
  }

  // --- schemas ---
  std::string visit(const json& s, const std::string& name, int depth) {
    if (depth > opts_.max_depth) {
      fail("", "schema nested deeper than " + std::to_string(opts_.max_depth));
    }
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail("false", "the schema `false` matches nothing");
      use("value");
      return "value";
    }
    if (!s.is_object()) fail("", "a schema must be an object or a boolean");
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (!kKnown.count(it.key()) && !kAnnotations.count(it.key())) {
        fail(it.key(), "unsupported keyword '" + it.key() + "'");
      }
    }
    if (s.contains("$ref")) return visit_ref(s, depth);
    if (s.contains("const")) return literal_value({s["const"]}, name);
    if (s.contains("enum")) return visit_enum(s, name);
    if (s.contains("anyOf") || s.contains("oneOf")) return visit_any_of(s, name, depth);
    if (s.contains("allOf")) return visit_all_of(s, name, depth);
    return visit_typed(s, name, depth);
  }

  // Only annotations may stand beside a combining keyword.
  void only_annotations_besides(const json& s, const std::string& keyword) {
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (it.key() != keyword && !kAnnotations.count(it.key())) {
        fail(keyword, "'" + keyword + "' combined with '" + it.key() + "' is not supported");
      }
    }
  }

  std::string visit_ref(const json& s, int depth) {
    only_annotations_besides(s, "$ref");
    if (!s["$ref"].is_string()) fail("$ref", "$ref must be a string");
    const std::string ref = s["$ref"].get<std::string>();
    auto it = refs_.find(ref);
    if (it != refs_.end()) return it->second;
    if (ref.empty() || ref[0] != '#') fail("$ref", "only local references (#...) are supported");
    const json* target = nullptr;
    try {
      target = &root_.at(json::json_pointer(ref.substr(1)));
    } catch (const json::exception&) {
      fail("$ref", "unresolvable reference '" + ref + "'");
    }
    const size_t slash = ref.find_last_of('/');
    const std::string name = fresh_name(slash == std::string::npos ? "ref" : ref.substr(slash + 1));
    refs_[ref] = name;  // before visiting: recursion refers to the rule by name
    add_rule_named(name, visit(*target, name, depth + 1));
    return name;
  }

  std::string visit_any_of(const json& s, const std::string& name, int depth) {
    const std::string kw = s.contains("anyOf") ? "anyOf" : "oneOf";
    only_annotations_besides(s, kw);
    const json& alts = s[kw];
    if (!alts.is_array() || alts.empty()) fail(kw, kw + " must be a non-empty array");
    std::string body;
    for (size_t i = 0; i < alts.size(); ++i) {
      body += (i ? " | " : "") + visit(alts[i], name + "-" + std::to_string(i), depth + 1);
    }
    return add_rule(name, body);
  }

  std::string visit_all_of(const json& s, const std::string& name, int depth) {
    only_annotations_besides(s, "allOf");
    const json& all = s["allOf"];
    if (!all.is_array() || all.empty()) fail("allOf", "allOf must be a non-empty array");
    const json* single = nullptr;
    for (const auto& sub : all) {
      if (is_trivial(sub)) continue;
      if (single) fail("allOf", "allOf with more than one constraining schema is not supported");
      single = &sub;
    }
    if (!single) {
      use("value");
      return "value";
    }
    return visit(*single, name, depth + 1);
  }

  std::string literal_value(const std::vector<json>& values, const std::string& name) {
    std::vector<std::string> texts;
    for (const auto& v : values) texts.push_back(v.dump(-1, ' ', false));
    use("space");
    return add_rule(name, "(" + trie_alternatives(texts, name) + ") space");
  }

  std::string visit_enum(const json& s, const std::string& name) {
    const json& e = s["enum"];
    if (!e.is_array() || e.empty()) fail("enum", "enum must be a non-empty array");
    if (e.size() > opts_.max_enum_values) {
      fail("enum", "more than " + std::to_string(opts_.max_enum_values) + " enum values");
    }
    std::vector<json> values(e.begin(), e.end());
    return literal_value(values, name);
  }

  // Literal alternatives factored by common prefixes (code points): one rule per branching
  // trie node, so 10,000 values never give 10,000 parse stacks at once. Iterative.
  std::string trie_alternatives(const std::vector<std::string>& texts, const std::string& name) {
    const std::vector<TrieNode> nodes = codepoint_trie(texts, "enum");
    std::map<int, std::string> rule_of;
    std::vector<int> todo{0};
    std::string root_body;
    while (!todo.empty()) {
      const int x = todo.back();
      todo.pop_back();
      std::string body = nodes[x].end ? "\"\"" : "";
      for (const auto& [cp, child] : nodes[x].kids) {
        std::string text;
        append_utf8(cp, &text);
        int y = child;
        while (!nodes[y].end && nodes[y].kids.size() == 1) {
          append_utf8(nodes[y].kids.begin()->first, &text);
          y = nodes[y].kids.begin()->second;
        }
        std::string alt = gbnf_literal(text);
        if (!nodes[y].kids.empty()) {
          auto it = rule_of.find(y);
          if (it == rule_of.end()) {
            it = rule_of.emplace(y, fresh_name(name + "-t")).first;
            todo.push_back(y);
          }
          alt += " " + it->second;
        }
        body += (body.empty() ? "" : " | ") + alt;
      }
      if (x == 0) {
        root_body = body;
      } else {
        add_rule_named(rule_of[x], body);
      }
    }
    return root_body;
  }

  std::string visit_typed(const json& s, const std::string& name, int depth) {
    std::vector<std::string> types;
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const auto& x : t) {
          if (!x.is_string()) fail("type", "type must be a string or an array of strings");
          types.push_back(x.get<std::string>());
        }
      } else {
        fail("type", "type must be a string or an array of strings");
      }
    } else {
      types = infer_types(s);
    }
    if (types.empty()) {
      use("value");
      return "value";
    }
    std::string body;
    for (const auto& t : types) {
      body += (body.empty() ? "" : " | ") + visit_type(s, t, name, depth);
    }
    return types.size() == 1 ? body : add_rule(name, body);
  }

  std::vector<std::string> infer_types(const json& s) {
    std::vector<std::string> types;
    if (has_any(s, kObjectWords)) types.push_back("object");
    if (has_any(s, kArrayWords)) types.push_back("array");
    if (has_any(s, kStringWords)) types.push_back("string");
    if (has_any(s, kNumberWords)) types.push_back("number");
    if (types.size() > 1) {
      fail("type", "keywords of several types without 'type' are not supported");
    }
    return types;
  }

  std::string visit_type(const json& s, const std::string& t, const std::string& name, int depth) {
    if (t == "object") return visit_object(s, name, depth);
    if (t == "array") return visit_array(s, name, depth);
    if (t == "string") return visit_string(s, name);
    if (t == "integer") return visit_number(s, name, true);
    if (t == "number") return visit_number(s, name, false);
    if (t == "boolean" || t == "null") {
      use(t);
      return t;
    }
    fail("type", "unknown type '" + t + "'");
  }

  std::string visit_object(const json& s, const std::string& name, int depth);
  std::string visit_array(const json& s, const std::string& name, int depth);
  std::string visit_string(const json& s, const std::string& name);
  std::string visit_number(const json& s, const std::string& name, bool integer);
  std::string not_strings(const std::vector<std::string>& keys, const std::string& name);
  std::optional<int64_t> int_bound(const json& s, const char* keyword, bool integer_valued);

  const json& root_;
  const JsonSchemaOptions& opts_;
  std::map<std::string, std::string> bodies_;
  std::vector<std::string> order_;
  std::set<std::string> used_;
  std::unordered_map<std::string, std::string> refs_;
  std::unordered_map<std::string, int> name_counter_;
};

size_t count_of(const json& s, const char* keyword) {
  if (!s.contains(keyword)) return 0;
  const json& v = s[keyword];
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
    fail(keyword, std::string(keyword) + " must be a non-negative integer");
  }
  const uint64_t n = v.get<uint64_t>();
  if (n > 10000) fail(keyword, std::string(keyword) + " over 10000 is not supported");
  return static_cast<size_t>(n);
}

// Properties in the schema's order: required ones mandatory, the others optional, commas only
// between present members. head_i: nothing written yet, members i.. to go; tail_i: something
// written, members i.. to go. Linear in the number of properties.
std::string SchemaConverter::visit_object(const json& s, const std::string& name, int depth) {
  const json empty = json::object();
  const json& props = s.contains("properties") ? s["properties"] : empty;
  if (!props.is_object()) fail("properties", "properties must be an object");
  std::set<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) fail("required", "required must be an array");
    for (const auto& r : s["required"]) {
      if (!r.is_string()) fail("required", "required must list strings");
      if (!props.contains(r.get<std::string>())) {
        fail("required", "required property '" + r.get<std::string>() +
                             "' is not in properties (not supported)");
      }
      required.insert(r.get<std::string>());
    }
  }
  use("space");
  std::vector<std::string> kv, keys;
  std::vector<bool> req;
  for (auto it = props.begin(); it != props.end(); ++it) {
    const std::string vr = visit(it.value(), name + "-" + it.key(), depth + 1);
    kv.push_back(gbnf_literal(json(it.key()).dump(-1, ' ', false)) + " space \":\" space " + vr);
    keys.push_back(it.key());
    req.push_back(required.count(it.key()) > 0);
  }
  std::string extra;  // one extra member, when allowed
  const json ap = s.contains("additionalProperties") ? s["additionalProperties"] : json(true);
  if (!(ap.is_boolean() && !ap.get<bool>())) {
    if (!ap.is_boolean() && !ap.is_object()) {
      fail("additionalProperties", "additionalProperties must be a boolean or a schema");
    }
    const std::string vr = visit(ap, name + "-additional", depth + 1);
    extra = add_rule(name + "-extra-kv", not_strings(keys, name) + " \":\" space " + vr);
  }
  const size_t n = kv.size();
  std::string tail = extra.empty() ? "" : add_rule(name + "-tail", "(\",\" space " + extra + ")*");
  std::string head =
      extra.empty()
          ? ""
          : add_rule(name + "-head", "(" + extra + " " + (tail.empty() ? "" : tail) + ")?");
  for (size_t i = n; i-- > 0;) {
    const std::string next_tail = tail, next_head = head;
    tail = add_rule(
        name + "-tail",
        (req[i] ? "\",\" space " + kv[i] : "(\",\" space " + kv[i] + ")?") + " " + next_tail);
    head = add_rule(name + "-head", req[i] ? kv[i] + " " + next_tail
                                           : kv[i] + " " + next_tail + " | " +
                                                 (next_head.empty() ? "\"\"" : next_head));
  }
  return add_rule(name, "\"{\" space " + head + " \"}\" space");
}

// A JSON string (with its trailing space) equal to none of `keys`: it follows a key's
// characters literally, or leaves every key at a raw character no key has there.
std::string SchemaConverter::not_strings(const std::vector<std::string>& keys,
                                         const std::string& name) {
  use("string");
  if (keys.empty()) return "string";
  const std::vector<TrieNode> nodes = codepoint_trie(keys, "properties");
  std::vector<std::string> rule(nodes.size());
  for (auto& r : rule) r = fresh_name(name + "-key");
  char buf[16];
  for (size_t x = 0; x < nodes.size(); ++x) {
    std::string body = nodes[x].end ? "" : "\"\" | ";
    std::string reject = "[^\"\\\\\\x00-\\x1F";
    for (const auto& [cp, child] : nodes[x].kids) {
      std::string ch;
      append_utf8(cp, &ch);
      std::string text = json(ch).dump(-1, ' ', false);  // the JSON spelling, e.g. \" or \n
      body += gbnf_literal(text.substr(1, text.size() - 2)) + " " + rule[child] + " | ";
      std::snprintf(buf, sizeof(buf), "\\U%08X", cp);
      reject += buf;
    }
    add_rule_named(rule[x], body + reject + "] char*");
  }
  return add_rule(name + "-other-key", "\"\\\"\" " + rule[0] + " \"\\\"\" space");
}

std::string SchemaConverter::visit_array(const json& s, const std::string& name, int depth) {
  std::string item;
  if (s.contains("items")) {
    if (s["items"].is_array()) fail("items", "items as an array (tuples) is not supported");
    item = visit(s["items"], name + "-item", depth + 1);
  } else {
    use("value");
    item = "value";
  }
  use("space");
  const size_t min = count_of(s, "minItems");
  const bool bounded = s.contains("maxItems");
  const size_t max = bounded ? count_of(s, "maxItems") : 0;
  if (bounded && max < min) fail("maxItems", "maxItems < minItems");
  if (bounded && max == 0) return add_rule(name, "\"[\" space \"]\" space");
  const std::string more = "(\",\" space " + item + ")";
  std::string list;
  if (min == 0) {
    list = "(" + item + " " + more + (bounded ? "{0," + std::to_string(max - 1) + "}" : "*") + ")?";
  } else {
    list = item + " " + more + "{" + std::to_string(min - 1) + "," +
           (bounded ? std::to_string(max - 1) : "") + "}";
  }
  return add_rule(name, "\"[\" space " + list + " \"]\" space");
}

std::string SchemaConverter::visit_string(const json& s, const std::string& name) {
  use("space");
  const bool lengths = s.contains("minLength") || s.contains("maxLength");
  if (s.contains("format")) {
    if (lengths || s.contains("pattern")) {
      fail("format", "format combined with pattern or lengths is not supported");
    }
    if (!s["format"].is_string()) fail("format", "format must be a string");
    const std::string f = s["format"].get<std::string>();
    if (f != "date" && f != "time" && f != "date-time" && f != "uuid" && f != "email") {
      fail("format", "unsupported format '" + f + "'");
    }
    use(f);
    return add_rule(name, "\"\\\"\" " + f + " \"\\\"\" space");
  }
  if (s.contains("pattern")) {
    if (lengths) fail("pattern", "pattern combined with lengths is not supported");
    if (!s["pattern"].is_string()) fail("pattern", "pattern must be a string");
    return add_rule(
        name, "\"\\\"\" " + pattern_to_gbnf(s["pattern"].get<std::string>()) + " \"\\\"\" space");
  }
  if (!lengths) {
    use("string");
    return "string";
  }
  use("char");
  const size_t min = count_of(s, "minLength");
  const bool bounded = s.contains("maxLength");
  const size_t max = bounded ? count_of(s, "maxLength") : 0;
  if (bounded && max < min) fail("maxLength", "maxLength < minLength");
  const std::string rep =
      "{" + std::to_string(min) + "," + (bounded ? std::to_string(max) : "") + "}";
  return add_rule(name, "\"\\\"\" char" + rep + " \"\\\"\" space");
}

// An integer bound from `keyword`, or nullopt. Integers round inward later; numbers need
// integer-valued bounds (see the header).
std::optional<int64_t> SchemaConverter::int_bound(const json& s, const char* keyword,
                                                  bool integer_valued) {
  if (!s.contains(keyword)) return std::nullopt;
  const json& v = s[keyword];
  if (!v.is_number()) fail(keyword, std::string(keyword) + " must be a number");
  const double d = v.get<double>();
  if (!std::isfinite(d) || std::fabs(d) > static_cast<double>(kMaxIntBound)) {
    fail(keyword, std::string(keyword) + " beyond +-1e15 is not supported");
  }
  if (integer_valued && d != std::floor(d)) {
    fail(keyword, std::string(keyword) + ": only integer bounds are supported for numbers");
  }
  const bool lower = std::string(keyword).find("inimum") != std::string::npos;
  return static_cast<int64_t>(lower ? std::ceil(d) : std::floor(d));
}

std::string SchemaConverter::visit_number(const json& s, const std::string& name, bool integer) {
  if (!has_any(s, kNumberWords)) {
    const std::string prim = integer ? "integer" : "number";
    use(prim);
    return prim;
  }
  use("space");
  auto lo = int_bound(s, "minimum", !integer), hi = int_bound(s, "maximum", !integer);
  auto xlo = int_bound(s, "exclusiveMinimum", !integer);
  auto xhi = int_bound(s, "exclusiveMaximum", !integer);
  // Integers inside: exclusive bounds move by one (they are integers now; a fractional
  // exclusive bound of an integer schema was rounded inward, which already excludes it...
  // unless it was integral, hence the +-1 only when the original value was integral).
  auto ilo = lo, ihi = hi;
  if (xlo) {
    const int64_t b =
        s["exclusiveMinimum"].get<double>() == static_cast<double>(*xlo) ? *xlo + 1 : *xlo;
    ilo = ilo ? std::max(*ilo, b) : b;
  }
  if (xhi) {
    const int64_t b =
        s["exclusiveMaximum"].get<double>() == static_cast<double>(*xhi) ? *xhi - 1 : *xhi;
    ihi = ihi ? std::min(*ihi, b) : b;
  }
  const auto ints = int_range_gbnf(ilo, ihi);
  std::string body = ints ? "(" + *ints + ")" : "";
  if (!integer) {
    // I.F with F > 0: the value lies in (I, I+1), inside [a, b] when I >= a and I + 1 <= b.
    std::optional<int64_t> a = lo ? lo : xlo, b = hi ? hi : xhi;
    if (lo && xlo) a = std::max(*lo, *xlo);
    if (hi && xhi) b = std::min(*hi, *xhi);
    const int64_t flo = a ? std::max<int64_t>(*a, 0) : 0;
    const auto fr = b ? int_range_gbnf(flo, *b - 1) : int_range_gbnf(flo, std::nullopt);
    if (fr) body += (body.empty() ? "" : " | ") + ("(" + *fr + ") \".\" [0-9]{0,5} [1-9]");
  }
  if (body.empty()) fail("minimum", "the bounds leave no value");
  return add_rule(name, "(" + body + ") space");
}

}  // namespace

std::string json_schema_to_gbnf(const std::string& schema_json, const JsonSchemaOptions& opts) {
  if (schema_json.size() > opts.max_schema_bytes) {
    fail("", "schema of " + std::to_string(schema_json.size()) + " bytes is over the limit of " +
                 std::to_string(opts.max_schema_bytes));
  }
  json root;
  try {
    root = json::parse(schema_json);
  } catch (const json::exception& e) {
    fail("", std::string("schema is not valid JSON: ") + e.what());
  }
  return SchemaConverter(root, opts).convert();
}

std::string json_object_gbnf() {
  static const json kEmpty = json::object();
  static const JsonSchemaOptions kOpts;
  return SchemaConverter(kEmpty, kOpts).any_object();
}

std::string gbnf_literal(std::string_view s) {
  std::string out = "\"";
  char buf[8];
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    uint32_t cp;
    if (!decode_utf8(s, &i, &cp)) throw GrammarError("", "gbnf_literal: not valid UTF-8");
    if (cp == '"' || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp < 0x20 || cp == 0x7F) {
      std::snprintf(buf, sizeof(buf), "\\x%02X", cp);
      out += buf;
    } else {
      out.append(s.substr(start, i - start));
    }
  }
  return out + "\"";
}

}  // namespace ktl::grammar
