#include "core/grammar/compiled_grammar.h"

#include <map>

#include "core/grammar/gbnf_parser.h"
#include "core/grammar/grammar_error.h"
#include "core/grammar/stack_automaton.h"

namespace ktl::grammar {

std::shared_ptr<const CompiledGrammar> CompiledGrammar::compile(
    const std::string& gbnf, std::shared_ptr<const TokenVocab> vocab, const GrammarLimits& limits) {
  if (!vocab) throw GrammarError("", "grammar: no vocabulary");
  const GrammarIr ir = parse_gbnf(gbnf, limits);
  std::shared_ptr<const CompiledGrammar> g(new CompiledGrammar(ir, std::move(vocab), limits));
  // A grammar whose very first state has too many stacks (ambiguity that multiplies) is
  // rejected here rather than leaving every request with a dead matcher.
  StackAutomaton probe(*g);
  if (probe.initial() < 0) {
    throw GrammarError("", "grammar: the start state needs more than " +
                               std::to_string(limits.max_stacks) + " parse stacks (too ambiguous)");
  }
  return g;
}

CompiledGrammar::CompiledGrammar(const GrammarIr& ir, std::shared_ptr<const TokenVocab> vocab,
                                 const GrammarLimits& limits)
    : vocab_(std::move(vocab)), limits_(limits), sets_(ir.sets), root_(ir.root) {
  for (const auto& alts : ir.rules) {
    alt_offsets_.push_back(static_cast<int32_t>(alt_starts_.size()));
    for (const auto& alt : alts) {
      alt_starts_.push_back(static_cast<int32_t>(elems_.size()));
      elems_.insert(elems_.end(), alt.begin(), alt.end());
      elems_.push_back({ElemType::kEnd, 0});
    }
  }
  alt_offsets_.push_back(static_cast<int32_t>(alt_starts_.size()));
  compute_byte_classes();
}

// Refines one class per byte by membership in each set: bytes with the same class are in
// exactly the same sets, so a transition computed for one of them holds for all.
void CompiledGrammar::compute_byte_classes() {
  std::vector<int> cls(256, 0);
  for (const ByteSet& s : sets_) {
    std::map<std::pair<int, bool>, int> remap;
    for (int b = 0; b < 256; ++b) {
      const auto key = std::make_pair(cls[b], s.test(static_cast<uint8_t>(b)));
      auto it = remap.emplace(key, static_cast<int>(remap.size())).first;
      cls[b] = it->second;
    }
  }
  num_classes_ = 0;
  std::map<int, int> dense;
  for (int b = 0; b < 256; ++b) {
    auto it = dense.emplace(cls[b], num_classes_);
    if (it.second) {
      class_byte_[num_classes_] = static_cast<uint8_t>(b);
      ++num_classes_;
    }
    byte_class_[b] = static_cast<uint8_t>(it.first->second);
  }
}

std::shared_ptr<const CompiledGrammar::Mask> CompiledGrammar::find_mask(
    const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = lru_index_.find(key);
  if (it == lru_index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void CompiledGrammar::store_mask(const std::string& key, std::shared_ptr<const Mask> mask) const {
  if (limits_.mask_cache_entries == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = lru_index_.find(key);
  if (it != lru_index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.emplace_front(key, std::move(mask));
  lru_index_.emplace(key, lru_.begin());
  while (lru_.size() > limits_.mask_cache_entries) {
    lru_index_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

size_t CompiledGrammar::mask_cache_size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

}  // namespace ktl::grammar
