#include "core/grammar/schema_pattern.h"

#include <cstdio>
#include <vector>

#include "core/grammar/grammar_error.h"
#include "core/grammar/utf8_ranges.h"

namespace ktl::grammar {

namespace {

constexpr int kMaxGroupDepth = 64;

[[noreturn]] void fail(const std::string& msg) {
  throw GrammarError("pattern", "pattern: " + msg);
}

// Characters a JSON string may hold without an escape.
std::vector<CodeRange> json_raw(std::vector<CodeRange> r) {
  std::vector<CodeRange> forbidden = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
  std::vector<CodeRange> allowed = complement_ranges(forbidden), out;
  r = normalize_ranges(std::move(r));
  for (const auto& a : r) {  // intersection of two sorted range lists
    for (const auto& b : allowed) {
      const uint32_t lo = std::max(a.first, b.first), hi = std::min(a.second, b.second);
      if (lo <= hi) out.emplace_back(lo, hi);
    }
  }
  return normalize_ranges(out);
}

std::string class_gbnf(const std::vector<CodeRange>& ranges) {
  const auto r = json_raw(ranges);
  if (r.empty()) fail("a character class matches no character allowed unescaped in JSON");
  std::string out = "[";
  char buf[16];
  for (const auto& [lo, hi] : r) {
    std::snprintf(buf, sizeof(buf), "\\U%08X", lo);
    out += buf;
    if (hi != lo) {
      std::snprintf(buf, sizeof(buf), "-\\U%08X", hi);
      out += buf;
    }
  }
  return out + "]";
}

std::vector<CodeRange> shorthand(char c, bool* known) {
  *known = true;
  switch (c) {
    case 'd':
      return {{'0', '9'}};
    case 'D':
      return complement_ranges({{'0', '9'}});
    case 'w':
      return {{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {'_', '_'}};
    case 'W':
      return complement_ranges({{'a', 'z'}, {'A', 'Z'}, {'0', '9'}, {'_', '_'}});
    case 's':
      return {{' ', ' '}, {'\t', '\r'}};
    case 'S':
      return complement_ranges({{' ', ' '}, {'\t', '\r'}});
    default:
      *known = false;
      return {};
  }
}

class PatternParser {
 public:
  explicit PatternParser(const std::string& p) : p_(p) {}

  std::string parse() {
    if (p_.size() < 2 || p_.front() != '^' || p_.back() != '$') {
      fail("must be anchored as ^...$");
    }
    end_ = p_.size() - 1;
    pos_ = 1;
    std::string e = alternatives(0);
    if (pos_ != end_) fail("unbalanced ')'");
    return "(" + e + ")";
  }

 private:
  bool more() const { return pos_ < end_; }

  std::string alternatives(int depth) {
    std::string out = sequence(depth);
    while (more() && p_[pos_] == '|') {
      ++pos_;
      out += " | " + sequence(depth);
    }
    return out;
  }

  std::string sequence(int depth) {
    std::string out;
    while (more() && p_[pos_] != '|' && p_[pos_] != ')') {
      std::string atom_text = atom(depth);
      atom_text += quantifier();
      out += (out.empty() ? "" : " ") + atom_text;
    }
    return out.empty() ? "\"\"" : out;
  }

  std::string atom(int depth) {
    const char c = p_[pos_];
    if (c == '(') {
      if (depth >= kMaxGroupDepth) fail("groups nested too deeply");
      ++pos_;
      if (more() && p_[pos_] == '?') {
        if (pos_ + 1 < end_ && p_[pos_ + 1] == ':') {
          pos_ += 2;
        } else {
          fail("only (?:...) groups are supported (no lookaround or flags)");
        }
      }
      std::string inner = alternatives(depth + 1);
      if (!more() || p_[pos_] != ')') fail("unbalanced '('");
      ++pos_;
      return "(" + inner + ")";
    }
    if (c == '[') return char_class();
    if (c == '.') {
      ++pos_;
      return class_gbnf(complement_ranges({{'\n', '\n'}, {'\r', '\r'}}));
    }
    if (c == '\\') return escape_atom();
    if (c == '^' || c == '$') fail("anchors are only supported at the start and the end");
    if (c == '*' || c == '+' || c == '?' || c == '{') fail("quantifier without an atom");
    return literal(next_char());
  }

  uint32_t next_char() {
    uint32_t cp;
    if (!decode_utf8(p_, &pos_, &cp) || pos_ > end_) fail("invalid UTF-8");
    return cp;
  }

  std::string literal(uint32_t cp) {
    if (cp == '"') return "\"\\\\\\\"\"";  // the JSON text \" as a GBNF literal
    if (cp == '\\') return "\"\\\\\\\\\"";
    if (cp < 0x20) fail("control characters are not supported");
    return class_gbnf({{cp, cp}});
  }

  std::string escape_atom() {
    ++pos_;
    if (!more()) fail("trailing backslash");
    const char e = p_[pos_];
    bool known;
    auto r = shorthand(e, &known);
    if (known) {
      ++pos_;
      return class_gbnf(r);
    }
    return literal(escaped_char());
  }

  // After a backslash (at the escaped character): the character it stands for.
  uint32_t escaped_char() {
    const char e = p_[pos_];
    if (e == 'n' || e == 't' || e == 'r') fail("control characters are not supported");
    if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
      fail(std::string("unsupported escape \\") + e);
    }
    return next_char();
  }

  std::string char_class() {
    ++pos_;
    const bool negate = more() && p_[pos_] == '^';
    if (negate) ++pos_;
    std::vector<CodeRange> ranges;
    bool first = true;
    while (more() && (p_[pos_] != ']' || first)) {
      first = false;
      uint32_t lo;
      if (p_[pos_] == '\\') {
        ++pos_;
        if (!more()) fail("unterminated class");
        bool known;
        auto r = shorthand(p_[pos_], &known);
        if (known) {
          ++pos_;
          ranges.insert(ranges.end(), r.begin(), r.end());
          continue;
        }
        lo = escaped_char();
      } else {
        lo = next_char();
      }
      uint32_t hi = lo;
      if (pos_ + 1 < end_ && p_[pos_] == '-' && p_[pos_ + 1] != ']') {
        ++pos_;
        if (p_[pos_] == '\\') {
          ++pos_;
          hi = escaped_char();
        } else {
          hi = next_char();
        }
        if (hi < lo) fail("reversed range in a class");
      }
      ranges.emplace_back(lo, hi);
    }
    if (!more()) fail("unterminated class");
    ++pos_;
    return class_gbnf(negate ? complement_ranges(ranges) : ranges);
  }

  int number() {
    long v = 0;
    if (!more() || p_[pos_] < '0' || p_[pos_] > '9') fail("expected a number in {}");
    while (more() && p_[pos_] >= '0' && p_[pos_] <= '9') {
      v = v * 10 + (p_[pos_++] - '0');
      if (v > 10000) fail("repetition count over 10000");
    }
    return static_cast<int>(v);
  }

  std::string quantifier() {
    if (!more()) return "";
    std::string q;
    const char c = p_[pos_];
    if (c == '*' || c == '+' || c == '?') {
      ++pos_;
      q = std::string(1, c);
    } else if (c == '{') {
      ++pos_;
      const int m = number();
      q = "{" + std::to_string(m);
      if (more() && p_[pos_] == ',') {
        ++pos_;
        q += ",";
        if (more() && p_[pos_] != '}') {
          const int n = number();
          if (n < m) fail("{m,n} with n < m");
          q += std::to_string(n);
        }
      }
      if (!more() || p_[pos_] != '}') fail("expected '}'");
      ++pos_;
      q += "}";
    } else {
      return "";
    }
    if (more() && p_[pos_] == '?') ++pos_;  // lazy: same language
    if (more() && (p_[pos_] == '*' || p_[pos_] == '+' || p_[pos_] == '?' || p_[pos_] == '{')) {
      fail("stacked quantifiers are not supported");
    }
    return q;
  }

  const std::string& p_;
  size_t pos_ = 0;
  size_t end_ = 0;
};

}  // namespace

std::string pattern_to_gbnf(const std::string& pattern) {
  return PatternParser(pattern).parse();
}

}  // namespace ktl::grammar
