// The matcher's engine: a lazily built DFA whose states are sets of parse stacks.
//
// A parse stack is the llama.cpp idea: the grammar positions still to match, top first; the top
// is always a byte set (a terminal), the empty stack means "sentence complete". Stacks are
// persistent linked lists interned in an arena, so a stack is an int and a set of stacks is a
// sorted int vector, itself interned: a DFA state. step(state, byte) advances every stack whose
// top accepts the byte and re-expands rule references (tail calls do not grow the stack, so
// `x*` runs in constant stack depth). Transitions are cached per (state, byte class), so after
// warm-up a step is one table load: the token-mask DFS walks a 32k-token trie in well under a
// millisecond.
//
// Bounds: a state with more than GrammarLimits::max_stacks stacks (a grammar whose ambiguity
// multiplies) is treated as dead. The arena only grows; the owner calls compact() between
// tokens, which rebuilds it around the one state still needed when it gets large.
//
// Thread-safety: one thread at a time (it is the mutable cache of one GrammarMatcher).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/grammar/compiled_grammar.h"

namespace ktl::grammar {

class StackAutomaton {
 public:
  static constexpr int32_t kDead = -1;

  explicit StackAutomaton(const CompiledGrammar& g);

  // The start state (root expanded), or kDead when it is over max_stacks.
  int32_t initial();

  int32_t step(int32_t state, uint8_t byte) {
    const size_t slot = static_cast<size_t>(state) * nc_ + g_.byte_class(byte);
    const int32_t t = trans_[slot];
    return t != kUnknown ? t : compute(state, g_.byte_class(byte));
  }

  bool complete(int32_t state) const { return stacks(state).first[0] == 0; }  // sorted: 0 first
  bool only_complete(int32_t state) const {
    auto [p, n] = stacks(state);
    return n == 1 && p[0] == 0;
  }
  // A key equal for equal stack sets across automata (positions, not arena ids).
  std::string canonical_key(int32_t state) const;

  std::shared_ptr<const CompiledGrammar::Mask>& mask_slot(int32_t state) { return masks_[state]; }

  // When the arena is large, rebuilds it holding only `keep`; returns keep's new id.
  int32_t compact(int32_t keep);
  size_t num_states() const { return state_begin_.size() - 1; }

 private:
  static constexpr int32_t kUnknown = -2;
  struct Node {
    int32_t pos;     // an element of CompiledGrammar::elems()
    int32_t parent;  // the stack below (0: none)
  };

  std::pair<const int32_t*, size_t> stacks(int32_t state) const {
    const int32_t b = state_begin_[state];
    return {stack_pool_.data() + b, static_cast<size_t>(state_begin_[state + 1] - b)};
  }
  int32_t compute(int32_t state, int cls);
  bool expand(std::vector<std::pair<int32_t, int32_t>>* work);
  int32_t intern_node(int32_t pos, int32_t parent);
  int32_t intern_state(std::vector<int32_t>* stacks);
  void clear();

  const CompiledGrammar& g_;
  const size_t nc_;
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> node_index_;
  std::vector<int32_t> stack_pool_;
  std::vector<int32_t> state_begin_;
  std::unordered_map<std::string, int32_t> state_index_;
  std::vector<int32_t> trans_;
  std::vector<std::shared_ptr<const CompiledGrammar::Mask>> masks_;
  // Scratch for compute(), kept to avoid allocations.
  std::vector<int32_t> out_;
  std::unordered_set<uint64_t> seen_;
};

}  // namespace ktl::grammar
