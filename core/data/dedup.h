// Document deduplication.
// ExactDedup: 64-bit hash of the text with whitespace removed; a document is a duplicate when an
// earlier one had the same hash. NearDedup: MinHash signatures over character 5-grams with LSH
// banding; a candidate sharing a band is confirmed when the estimated Jaccard similarity
// (agreeing signature slots) reaches the threshold. The first occurrence is kept in both.
// Thread-safety: not thread-safe (both keep state across calls); use one per thread or lock.
#pragma once

#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ktl {

class ExactDedup {
 public:
  // True when an equal text was seen before; otherwise remembers it and returns false.
  bool is_duplicate(std::string_view text);
  size_t size() const { return seen_.size(); }
  static uint64_t key(std::string_view text);

 private:
  std::unordered_set<uint64_t> seen_;
};

struct NearDedupConfig {
  double threshold = 0.8;  // estimated Jaccard similarity of 5-gram sets counted as duplicate
  int num_perm = 64;       // signature length; memory is num_perm * 4 bytes per kept document
  int shingle = 5;         // characters per shingle
  uint64_t seed = 42;
};

class NearDedup {
 public:
  explicit NearDedup(NearDedupConfig cfg = {});
  bool is_duplicate(std::string_view text);
  // Public for tests: the MinHash signature and the similarity estimate between two.
  std::vector<uint32_t> signature(std::string_view text) const;
  static double similarity(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b);
  int bands() const { return bands_; }
  int rows() const { return rows_; }

 private:
  NearDedupConfig cfg_;
  int bands_ = 0, rows_ = 0;
  std::vector<uint64_t> perm_seeds_;
  std::vector<std::vector<uint32_t>> kept_;  // signatures of kept docs
  std::vector<std::unordered_map<uint64_t, std::vector<uint32_t>>> tables_;  // band -> doc ids
};

}  // namespace ktl
