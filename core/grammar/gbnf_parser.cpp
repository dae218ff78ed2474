#include "core/grammar/gbnf_parser.h"

#include <map>
#include <unordered_map>

#include "core/grammar/grammar_error.h"
#include "core/grammar/utf8_ranges.h"

namespace ktl::grammar {

namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Parser {
 public:
  Parser(std::string_view text, const GrammarLimits& limits) : text_(text), limits_(limits) {}

  GrammarIr parse() {
    if (text_.size() > limits_.max_grammar_bytes) {
      throw GrammarError("", "grammar: " + std::to_string(text_.size()) +
                                 " bytes is over the limit of " +
                                 std::to_string(limits_.max_grammar_bytes));
    }
    skip_space(true);
    while (pos_ < text_.size()) {
      parse_rule();
      skip_space(true);
    }
    for (size_t r = 0; r < g_.rules.size(); ++r) {
      if (!defined_[r] && ref_pos_[r] != std::string_view::npos) {
        fail_at(ref_pos_[r], "undefined rule '" + g_.names[r] + "'");
      }
    }
    auto it = index_.find("root");
    if (it == index_.end() || !defined_[it->second]) {
      throw GrammarError("", "grammar: no 'root' rule");
    }
    g_.root = it->second;
    validate_and_prune(&g_);
    return std::move(g_);
  }

 private:
  [[noreturn]] void fail_at(size_t at, const std::string& msg) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line, col = 1;
      } else {
        ++col;
      }
    }
    throw GrammarError("", "grammar: line " + std::to_string(line) + ", column " +
                               std::to_string(col) + ": " + msg);
  }
  [[noreturn]] void fail(const std::string& msg) const { fail_at(pos_, msg); }

  char peek(size_t k = 0) const { return pos_ + k < text_.size() ? text_[pos_ + k] : '\0'; }
  bool at_end() const { return pos_ >= text_.size(); }

  void skip_space(bool newline_ok) {
    while (!at_end()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
      } else if (c == '\n' && newline_ok) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string parse_name() {
    const size_t start = pos_;
    while (!at_end() && is_name_char(peek())) ++pos_;
    if (pos_ == start) fail("expected a rule name");
    return std::string(text_.substr(start, pos_ - start));
  }

  int rule_index(const std::string& name) {
    auto it = index_.find(name);
    if (it != index_.end()) return it->second;
    return new_rule(name);
  }

  int new_rule(const std::string& name) {
    if (g_.rules.size() >= limits_.max_rules) {
      fail("more than " + std::to_string(limits_.max_rules) + " rules (after expansion)");
    }
    const int r = static_cast<int>(g_.rules.size());
    g_.rules.emplace_back();
    g_.names.push_back(name);
    defined_.push_back(false);
    ref_pos_.push_back(std::string_view::npos);
    index_.emplace(name, r);
    return r;
  }

  int helper_rule(std::vector<std::vector<Elem>> alts) {
    const int r = new_rule(cur_name_ + "~" + std::to_string(g_.rules.size()));
    count_elems(alts);
    g_.rules[r] = std::move(alts);
    defined_[r] = true;
    return r;
  }

  void count_elems(const std::vector<std::vector<Elem>>& alts) {
    for (const auto& a : alts) elems_ += a.size() + 1;
    if (elems_ > limits_.max_elements) {
      fail("grammar over " + std::to_string(limits_.max_elements) + " symbols (after expansion)");
    }
  }

  void parse_rule() {
    const size_t name_pos = pos_;
    const std::string name = parse_name();
    skip_space(false);
    if (text_.substr(pos_, 3) != "::=") fail("expected '::=' after rule name '" + name + "'");
    pos_ += 3;
    const int r = rule_index(name);
    if (defined_[r]) fail_at(name_pos, "rule '" + name + "' is defined twice");
    defined_[r] = true;
    cur_name_ = name;
    skip_space(true);
    auto alts = parse_alternatives(false, 0);
    count_elems(alts);
    g_.rules[r] = std::move(alts);
    skip_space(false);
    if (!at_end() && peek() != '\n') fail(std::string("unexpected '") + peek() + "'");
  }

  std::vector<std::vector<Elem>> parse_alternatives(bool nested, int depth) {
    std::vector<std::vector<Elem>> alts;
    while (true) {
      alts.push_back(parse_sequence(nested, depth));
      skip_space(nested);
      if (!nested && peek() == '\n') {  // a continuation line may start with '|'
        const size_t save = pos_;
        skip_space(true);
        if (peek() != '|') pos_ = save;
      }
      if (peek() != '|') return alts;
      ++pos_;
      skip_space(true);
    }
  }

  std::vector<Elem> parse_sequence(bool nested, int depth) {
    std::vector<Elem> seq;
    long last = -1;  // where the last symbol starts in seq (the operand of * + ? {})
    while (true) {
      skip_space(nested);
      const char c = peek();
      if (c == '"') {
        last = static_cast<long>(seq.size());
        parse_literal(&seq);
      } else if (c == '[') {
        last = static_cast<long>(seq.size());
        seq.push_back(parse_class());
      } else if (c == '.') {
        ++pos_;
        last = static_cast<long>(seq.size());
        seq.push_back(class_elem(normalize_ranges({{0, kMaxCodePoint}})));
      } else if (c == '(') {
        if (depth >= limits_.max_nesting) fail("parentheses nested too deeply");
        ++pos_;
        skip_space(true);
        auto alts = parse_alternatives(true, depth + 1);
        skip_space(true);
        if (peek() != ')') fail("expected ')'");
        ++pos_;
        last = static_cast<long>(seq.size());
        seq.push_back({ElemType::kRule, helper_rule(std::move(alts))});
      } else if (is_name_char(c)) {
        const size_t at = pos_;
        const std::string name = parse_name();
        skip_space(false);
        if (text_.substr(pos_, 3) == "::=") {  // the next rule: this sequence has ended
          pos_ = at;
          return seq;
        }
        const int r = rule_index(name);
        if (ref_pos_[r] == std::string_view::npos) ref_pos_[r] = at;
        last = static_cast<long>(seq.size());
        seq.push_back({ElemType::kRule, r});
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (last < 0) fail(std::string("'") + c + "' without a symbol before it");
        parse_repetition(&seq, static_cast<size_t>(last));
        last = -1;
      } else {
        return seq;
      }
    }
  }

  uint32_t parse_escape() {  // at the backslash
    ++pos_;
    const char e = peek();
    ++pos_;
    int digits = 0;
    switch (e) {
      case 'n':
        return '\n';
      case 't':
        return '\t';
      case 'r':
        return '\r';
      case '\\':
      case '"':
      case '[':
      case ']':
      case '-':
      case '/':
      case '\'':
      case '^':
        return static_cast<uint8_t>(e);
      case 'x':
        digits = 2;
        break;
      case 'u':
        digits = 4;
        break;
      case 'U':
        digits = 8;
        break;
      default:
        pos_ -= 2;
        fail(std::string("unknown escape '\\") + e + "'");
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const int h = hex_value(peek());
      if (h < 0) fail("expected a hex digit");
      v = v * 16 + static_cast<uint32_t>(h);
      ++pos_;
    }
    if (v > kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF)) fail("escape is not a code point");
    return v;
  }

  uint32_t parse_char() {
    if (peek() == '\\') return parse_escape();
    uint32_t cp;
    if (!decode_utf8(text_, &pos_, &cp)) fail("invalid UTF-8");
    return cp;
  }

  void parse_literal(std::vector<Elem>* seq) {
    ++pos_;
    while (peek() != '"') {
      if (at_end() || peek() == '\n') fail("unterminated string literal");
      std::string bytes;
      append_utf8(parse_char(), &bytes);
      for (unsigned char b : bytes) {
        ByteSet s;
        s.set(b);
        seq->push_back({ElemType::kBytes, set_index(s)});
      }
    }
    ++pos_;
  }

  Elem parse_class() {
    const size_t start = pos_;
    ++pos_;
    const bool negate = peek() == '^';
    if (negate) ++pos_;
    std::vector<CodeRange> ranges;
    while (peek() != ']') {
      if (at_end() || peek() == '\n') fail_at(start, "unterminated character class");
      const uint32_t lo = parse_char();
      uint32_t hi = lo;
      if (peek() == '-' && peek(1) != ']') {
        ++pos_;
        if (at_end()) fail_at(start, "unterminated character class");
        hi = parse_char();
        if (hi < lo) fail("character range is reversed");
      }
      ranges.emplace_back(lo, hi);
    }
    ++pos_;
    auto norm = negate ? complement_ranges(ranges) : normalize_ranges(ranges);
    if (norm.empty()) fail_at(start, "character class matches nothing");
    return class_elem(norm);
  }

  // ASCII-only classes are one byte set; others a helper rule of UTF-8 byte sequences.
  Elem class_elem(const std::vector<CodeRange>& ranges) {
    ByteSet ascii;
    bool has_ascii = false;
    std::vector<std::vector<Elem>> alts;
    for (const auto& seq : utf8_sequences(ranges)) {
      if (seq.size() == 1) {
        ascii.set_range(seq[0].first, seq[0].second);
        has_ascii = true;
        continue;
      }
      std::vector<Elem> alt;
      for (const auto& [lo, hi] : seq) {
        ByteSet s;
        s.set_range(lo, hi);
        alt.push_back({ElemType::kBytes, set_index(s)});
      }
      alts.push_back(std::move(alt));
    }
    if (alts.empty()) return {ElemType::kBytes, set_index(ascii)};
    auto it = class_rules_.find(ranges);
    if (it != class_rules_.end()) return {ElemType::kRule, it->second};
    if (has_ascii) alts.insert(alts.begin(), {Elem{ElemType::kBytes, set_index(ascii)}});
    const int r = helper_rule(std::move(alts));
    class_rules_.emplace(ranges, r);
    return {ElemType::kRule, r};
  }

  int set_index(const ByteSet& s) {
    auto it = set_index_.find(s);
    if (it != set_index_.end()) return it->second;
    const int i = static_cast<int>(g_.sets.size());
    g_.sets.push_back(s);
    set_index_.emplace(s, i);
    return i;
  }

  int parse_count() {
    long v = 0;
    if (peek() < '0' || peek() > '9') fail("expected a number");
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + (peek() - '0');
      if (v > limits_.max_repetition) {
        fail("repetition count over " + std::to_string(limits_.max_repetition));
      }
      ++pos_;
    }
    return static_cast<int>(v);
  }

  // x* -> R ::= x R | ;  x{m,n} -> x..x (m times) then n-m nested optionals, as llama.cpp.
  void parse_repetition(std::vector<Elem>* seq, size_t last) {
    int min = 0, max = -1;  // -1: unbounded
    const char op = peek();
    ++pos_;
    if (op == '+') {
      min = 1;
    } else if (op == '?') {
      max = 1;
    } else if (op == '{') {
      skip_space(false);
      min = max = parse_count();
      skip_space(false);
      if (peek() == ',') {
        ++pos_;
        skip_space(false);
        max = peek() == '}' ? -1 : parse_count();
        skip_space(false);
      }
      if (peek() != '}') fail("expected '}'");
      ++pos_;
      if (max >= 0 && max < min) fail("repetition {m,n} with n < m");
    }
    if (seq->size() == last) return;  // an empty literal repeated is still empty
    Elem sym = (*seq)[last];
    if (seq->size() - last > 1) {
      sym = {ElemType::kRule, helper_rule({std::vector<Elem>(seq->begin() + last, seq->end())})};
    }
    seq->resize(last);
    for (int i = 0; i < min; ++i) seq->push_back(sym);
    if (max < 0) {
      const int r = new_rule(cur_name_ + "~" + std::to_string(g_.rules.size()));
      g_.rules[r] = {{sym, Elem{ElemType::kRule, r}}, {}};
      defined_[r] = true;
      count_elems(g_.rules[r]);
      seq->push_back({ElemType::kRule, r});
    } else if (max > min) {
      int inner = helper_rule({{sym}, {}});
      for (int k = 1; k < max - min; ++k) {
        inner = helper_rule({{sym, Elem{ElemType::kRule, inner}}, {}});
      }
      seq->push_back({ElemType::kRule, inner});
    }
    elems_ += static_cast<size_t>(min);
    count_elems({});
  }

  std::string_view text_;
  const GrammarLimits& limits_;
  size_t pos_ = 0;
  size_t elems_ = 0;
  std::string cur_name_;
  GrammarIr g_;
  std::unordered_map<std::string, int> index_;
  std::vector<bool> defined_;
  std::vector<size_t> ref_pos_;
  std::map<ByteSet, int> set_index_;
  std::map<std::vector<CodeRange>, int> class_rules_;
};

}  // namespace

GrammarIr parse_gbnf(std::string_view text, const GrammarLimits& limits) {
  return Parser(text, limits).parse();
}

}  // namespace ktl::grammar
