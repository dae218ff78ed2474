#include "core/speculative/prompt_lookup.h"

#include <algorithm>

namespace ktl {

std::vector<int> prompt_lookup(const std::vector<int>& tokens, int max_ngram, int min_ngram,
                               int k) {
  const int len = static_cast<int>(tokens.size());
  if (k <= 0 || min_ngram < 1) return {};
  for (int n = std::min(max_ngram, len - 1); n >= min_ngram; --n) {
    const int* suffix = tokens.data() + len - n;
    // Latest start first: recent context predicts the continuation best. The match must end
    // before the suffix itself, so at least one token follows it.
    for (int start = len - n - 1; start >= 0; --start) {
      if (!std::equal(suffix, suffix + n, tokens.data() + start)) continue;
      // Copied as LZ77 copies: past the end the proposal continues with itself, so a repeating
      // pattern (the period len - from) is proposed for all k tokens.
      const int from = start + n;
      std::vector<int> out;
      out.reserve(k);
      for (int i = 0; i < k; ++i)
        out.push_back(from + i < len ? tokens[from + i] : out[from + i - len]);
      return out;
    }
  }
  return {};
}

}  // namespace ktl
