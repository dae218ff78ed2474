#include "core/grammar/grammar_matcher.h"

#include "core/grammar/grammar_error.h"
#include "core/grammar/stack_automaton.h"

namespace ktl::grammar {

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> g) : g_(std::move(g)) {
  if (!g_) throw GrammarError("", "grammar: no compiled grammar");
  reset();
}

GrammarMatcher::~GrammarMatcher() = default;
GrammarMatcher::GrammarMatcher(GrammarMatcher&&) noexcept = default;
GrammarMatcher& GrammarMatcher::operator=(GrammarMatcher&&) noexcept = default;

void GrammarMatcher::reset() {
  a_ = std::make_unique<StackAutomaton>(*g_);
  state_ = a_->initial();  // compile() checked it is not dead
}

int32_t GrammarMatcher::walk(std::string_view bytes) const {
  int32_t s = state_;
  for (char c : bytes) {
    s = a_->step(s, static_cast<uint8_t>(c));
    if (s < 0) return StackAutomaton::kDead;
  }
  return s;
}

bool GrammarMatcher::accepts_token(int id) const {
  const TokenVocab& v = g_->vocab();
  if (id < 0 || id >= v.size() || !v.maskable(id)) return false;
  return walk(v.token_bytes(id)) >= 0;
}

bool GrammarMatcher::accept_token(int id) {
  const TokenVocab& v = g_->vocab();
  if (id < 0 || id >= v.size() || !v.maskable(id)) return false;
  return accept_bytes(v.token_bytes(id));
}

bool GrammarMatcher::accept_bytes(std::string_view bytes) {
  const int32_t s = walk(bytes);
  if (s < 0) return false;
  state_ = a_->compact(s);
  return true;
}

bool GrammarMatcher::is_complete() const {
  return a_->complete(state_);
}

bool GrammarMatcher::is_terminated() const {
  if (!a_->complete(state_)) return false;
  if (a_->only_complete(state_)) return true;
  for (uint32_t w : allowed_mask()) {
    if (w) return false;
  }
  return true;
}

// The DFS over the vocabulary trie in preorder: st[d] is the automaton state after the first d
// bytes of the current node's path; a dead transition skips the node's whole subtree.
const CompiledGrammar::Mask& GrammarMatcher::allowed_mask() const {
  auto& slot = a_->mask_slot(state_);
  if (slot) return *slot;
  const std::string key = a_->canonical_key(state_);
  slot = g_->find_mask(key);
  if (slot) return *slot;

  const TokenVocab& v = g_->vocab();
  auto m = std::make_shared<CompiledGrammar::Mask>((v.size() + 31) / 32, 0u);
  uint32_t* bits = m->data();
  std::vector<int32_t> st(static_cast<size_t>(v.max_token_bytes()) + 1);
  st[0] = state_;
  const int32_t n = v.trie_nodes();
  const int32_t* toks = v.token_list().data();
  StackAutomaton& a = *a_;
  for (int32_t i = 1; i < n;) {
    const int32_t s = a.step(st[v.depth(i) - 1], v.byte(i));
    if (s < 0) {
      i = v.subtree_end(i);
      continue;
    }
    st[v.depth(i)] = s;
    for (int32_t k = v.tokens_begin(i), e = v.tokens_begin(i + 1); k < e; ++k) {
      bits[toks[k] >> 5] |= 1u << (toks[k] & 31);
    }
    ++i;
  }
  g_->store_mask(key, m);
  // compute() may have grown masks_, so the slot is looked up again.
  auto& fresh = a_->mask_slot(state_);
  fresh = std::move(m);
  return *fresh;
}

}  // namespace ktl::grammar
