// Compiled grammars by key (the server uses the GBNF or schema text plus the model), so a
// schema sent with every request is compiled once.
//
// Thread-safety: thread-safe. Two threads missing the same key at once may both compile; the
// first result stored wins, and both callers get a valid grammar. A throwing compile stores
// nothing and the exception reaches the caller.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/grammar/compiled_grammar.h"

namespace ktl::grammar {

class GrammarCache {
 public:
  explicit GrammarCache(size_t capacity = 64);

  std::shared_ptr<const CompiledGrammar> get_or_compile(
      const std::string& key,
      const std::function<std::shared_ptr<const CompiledGrammar>()>& compile);

  size_t hits() const;
  size_t misses() const;
  size_t size() const;

 private:
  using Entry = std::pair<std::string, std::shared_ptr<const CompiledGrammar>>;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  size_t hits_ = 0;
  size_t misses_ = 0;
};

}  // namespace ktl::grammar
