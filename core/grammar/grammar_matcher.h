// Grammar-constrained decoding for one sequence: which tokens may come next, and advancing by
// the chosen one.
//
// Works on bytes (see stack_automaton.h): a token is the bytes it adds, so byte-fallback tokens
// (a lone 0xEB) and pieces that split a Hangul syllable are matched exactly, and only valid
// UTF-8 is ever accepted. allowed_mask() walks the vocabulary's byte trie once, pruning
// every subtree whose prefix the grammar rejects; the mask of a state is then cached in this
// matcher and in the grammar's shared LRU (keyed by the canonical stack set), so the states a
// JSON generation keeps returning to (inside a string, between members) cost a copy.
//
// Thread-safety: one per sequence, used by one thread at a time (const methods too: they fill
// the matcher's caches). The CompiledGrammar may be shared.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/grammar/compiled_grammar.h"

namespace ktl::grammar {

class StackAutomaton;

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> g);
  ~GrammarMatcher();
  GrammarMatcher(GrammarMatcher&&) noexcept;
  GrammarMatcher& operator=(GrammarMatcher&&) noexcept;

  bool accepts_token(int id) const;  // would accept_token succeed?
  bool accept_token(int id);         // advances; false (state unchanged) if not allowed
  // Bit i of word i/32 set <=> token i allowed now ((vocab+31)/32 words). The reference is to
  // the cached mask of this state: valid until the next accept or reset.
  const CompiledGrammar::Mask& allowed_mask() const;
  bool is_complete() const;    // the text so far is a whole sentence of the grammar (EOS may come)
  bool is_terminated() const;  // complete, and no token can extend it

  // Raw bytes instead of a token (tests, tools): all or nothing, like accept_token.
  bool accept_bytes(std::string_view bytes);
  void reset();  // back to the start of the grammar
  const CompiledGrammar& grammar() const { return *g_; }

 private:
  int32_t walk(std::string_view bytes) const;  // the state after `bytes`, or kDead

  std::shared_ptr<const CompiledGrammar> g_;
  std::unique_ptr<StackAutomaton> a_;  // mutable cache behind const methods (one thread)
  int32_t state_ = 0;
};

}  // namespace ktl::grammar
