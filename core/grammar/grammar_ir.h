// The byte-level form of a grammar, between the GBNF parser and the matcher.
//
// Every terminal is a set of bytes: a string literal is a sequence of single-byte sets, a
// Unicode class is a helper rule whose alternatives are UTF-8 byte-range sequences. Repetition
// is lowered to right-recursive helper rules. Rules hold alternatives of elements; an element is
// a byte set or a rule reference. validate_and_prune() checks the grammar can be matched by the
// stack matcher (no left recursion, a finite sentence exists) and drops alternatives that can
// never finish, so every prefix the matcher accepts can still be completed.
//
// Thread-safety: a plain value; the functions are pure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ktl::grammar {

struct ByteSet {
  uint64_t w[4] = {0, 0, 0, 0};
  bool test(uint8_t b) const { return (w[b >> 6] >> (b & 63)) & 1; }
  void set(uint8_t b) { w[b >> 6] |= uint64_t{1} << (b & 63); }
  void set_range(uint8_t lo, uint8_t hi) {
    for (int b = lo; b <= hi; ++b) set(static_cast<uint8_t>(b));
  }
  bool operator==(const ByteSet& o) const {
    return w[0] == o.w[0] && w[1] == o.w[1] && w[2] == o.w[2] && w[3] == o.w[3];
  }
  bool operator<(const ByteSet& o) const {
    for (int i = 0; i < 4; ++i) {
      if (w[i] != o.w[i]) return w[i] < o.w[i];
    }
    return false;
  }
};

enum class ElemType : uint8_t { kEnd, kBytes, kRule };

struct Elem {
  ElemType type;
  int32_t value;  // kBytes: index into GrammarIr::sets; kRule: rule index
};

struct GrammarIr {
  std::vector<std::string> names;                     // rule index -> name (helpers: "a_3")
  std::vector<std::vector<std::vector<Elem>>> rules;  // rule -> alternatives -> elements
  std::vector<ByteSet> sets;
  int root = -1;
};

// Throws GrammarError for left recursion (naming the rule) or when root has no finite sentence.
void validate_and_prune(GrammarIr* g);

}  // namespace ktl::grammar
