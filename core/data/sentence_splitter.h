// Korean sentence splitting: after sentence punctuation (. ? ! … 。 and runs of them, with closing
// quotes/brackets) followed by whitespace, and, optionally, after a sentence-final ending (다, 요,
// 까, 죠, 니다) followed by whitespace even without punctuation, as in informal reviews
// ("재밌다 배우 연기 최고"). Line breaks always end a sentence. Decimal points (3.14) and
// one-syllable words (다 먹었다) do not split.
// Thread-safety: stateless apart from its config; safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ktl {

struct SentenceSplitterConfig {
  bool split_on_endings = true;  // also split after 다/요/까/죠 + space without punctuation
};

class SentenceSplitter {
 public:
  explicit SentenceSplitter(SentenceSplitterConfig cfg = {}) : cfg_(cfg) {}
  // Sentences with surrounding whitespace trimmed; empty pieces are dropped.
  std::vector<std::string> split(std::string_view text) const;

 private:
  SentenceSplitterConfig cfg_;
};

}  // namespace ktl
