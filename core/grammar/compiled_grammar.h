// A GBNF grammar compiled for one vocabulary: the byte-level rules laid out flat for the stack
// matcher, byte equivalence classes (bytes no terminal tells apart share one class, so the
// matcher's transition table has a column per class, not per byte), and a bounded LRU of token
// masks shared by all matchers of this grammar (keyed by the canonical matcher state, so the
// second request with the same schema finds its masks ready).
//
// Layout: elems() holds every alternative of every rule, each ended by a kEnd element; the
// alternatives of rule r start at alt_starts()[alt_begin(r) .. alt_begin(r + 1)).
//
// Thread-safety: immutable after compile() except the mask cache, which has its own mutex;
// share it freely between threads and matchers.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/grammar/grammar_ir.h"
#include "core/grammar/grammar_limits.h"
#include "core/grammar/token_vocab.h"

namespace ktl::grammar {

class CompiledGrammar {
 public:
  using Mask = std::vector<uint32_t>;

  // GBNF text (root rule "root", subset in gbnf_parser.h) over the vocabulary. Throws
  // GrammarError.
  static std::shared_ptr<const CompiledGrammar> compile(const std::string& gbnf,
                                                        std::shared_ptr<const TokenVocab> vocab,
                                                        const GrammarLimits& limits = {});

  const TokenVocab& vocab() const { return *vocab_; }
  const GrammarLimits& limits() const { return limits_; }

  const std::vector<Elem>& elems() const { return elems_; }
  int32_t alt_begin(int rule) const { return alt_offsets_[rule]; }
  const std::vector<int32_t>& alt_starts() const { return alt_starts_; }
  int root() const { return root_; }
  const ByteSet& set(int i) const { return sets_[i]; }
  int rule_count() const { return static_cast<int>(alt_offsets_.size()) - 1; }

  int num_classes() const { return num_classes_; }
  uint8_t byte_class(uint8_t b) const { return byte_class_[b]; }
  uint8_t class_byte(int cls) const { return class_byte_[cls]; }  // a byte of that class

  // The shared mask cache (thread-safe). Returns null when absent.
  std::shared_ptr<const Mask> find_mask(const std::string& key) const;
  void store_mask(const std::string& key, std::shared_ptr<const Mask> mask) const;
  size_t mask_cache_size() const;

 private:
  CompiledGrammar(const GrammarIr& ir, std::shared_ptr<const TokenVocab> vocab,
                  const GrammarLimits& limits);
  void compute_byte_classes();

  std::shared_ptr<const TokenVocab> vocab_;
  GrammarLimits limits_;
  std::vector<Elem> elems_;
  std::vector<int32_t> alt_offsets_;
  std::vector<int32_t> alt_starts_;
  std::vector<ByteSet> sets_;
  int root_ = 0;
  int num_classes_ = 1;
  uint8_t byte_class_[256] = {};
  uint8_t class_byte_[256] = {};

  using LruList = std::list<std::pair<std::string, std::shared_ptr<const Mask>>>;
  mutable std::mutex mu_;
  mutable LruList lru_;
  mutable std::unordered_map<std::string, LruList::iterator> lru_index_;
};

}  // namespace ktl::grammar
