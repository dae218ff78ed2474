// HeldOutTexts: the texts of evaluation sets that training data must not contain.
// `ktl prepare-data --exclude FILE` loads them and drops every document whose cleaned text equals
// one of them (whitespace ignored, as ExactDedup compares), so a model is not scored on reviews or
// sentences it trained on. NSMC's dev reviews are all inside nsmc-reviews.jsonl.gz, and KorNLI's
// dev premises and hypotheses inside kornlu-sentences.txt; without this they land in train.
// Files: .jsonl/.ndjson (optionally .gz/.bz2): every string value of each line's object, including the
// strings inside arrays ("text", "premise", "hypothesis", "context", "choices"); any other file:
// one text per line. Matching is per whole document, not by n-gram overlap.
// Thread-safety: add_file()/add() are not thread-safe; contains() is safe once loading is done.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>

#include "core/data/text_cleaner.h"

namespace ktl {

class HeldOutTexts {
 public:
  // `cleaner` must be the pipeline's, so both sides are normalised alike.
  explicit HeldOutTexts(CleanerConfig cleaner = {}) : cleaner_(cleaner) {}

  // Adds the texts of one file; returns how many. Throws std::runtime_error on a missing file or
  // a line that is not a JSON object (naming file and line): a held-out set read in part would
  // leak the rest.
  uint64_t add_file(const std::string& path);
  void add(std::string_view raw);

  // `cleaned` is a document as the pipeline's cleaner left it.
  bool contains(std::string_view cleaned) const;
  size_t size() const { return keys_.size(); }

 private:
  TextCleaner cleaner_;
  std::unordered_set<uint64_t> keys_;
};

}  // namespace ktl
