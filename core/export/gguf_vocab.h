// A llama.cpp-style SentencePiece ("llama"/SPM) tokenizer over a GGUF vocabulary: the same
// algorithm as llama.cpp's llm_tokenizer_spm. Text gets a leading space (add_space_prefix),
// spaces become U+2581, the text is split into UTF-8 characters, adjacent pairs whose
// concatenation is a token are merged greedily by highest score (ties: leftmost first), and
// symbols that are not tokens fall back to <0xXX> byte tokens. For a BPE SentencePiece model
// this reproduces SentencePiece's own encoding; tests use it to check exported vocabularies.
// Thread-safety: immutable after construction; tokenize() is safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ktl {

class GgufFile;

class GgufVocab {
 public:
  GgufVocab(std::vector<std::string> tokens, std::vector<float> scores, int unk_id,
            bool add_space_prefix);
  // Reads tokenizer.ggml.{tokens, scores, unknown_token_id, add_space_prefix}.
  static GgufVocab from_gguf(const GgufFile& f);

  // Token ids for `text` (no BOS/EOS; control tokens in the text are not special-cased).
  std::vector<int> tokenize(std::string_view text) const;
  int size() const { return static_cast<int>(tokens_.size()); }
  const std::string& token(int id) const { return tokens_.at(id); }

 private:
  int lookup(std::string_view piece) const;  // -1 when absent
  int byte_token(unsigned char b) const;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> to_id_;
  int unk_id_;
  bool add_space_prefix_;
};

}  // namespace ktl
