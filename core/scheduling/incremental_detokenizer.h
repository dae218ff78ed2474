// Streaming detokenisation that only ever emits complete UTF-8.
//
// SentencePiece byte-fallback tokens (<0xEB><0x8A><0x98>) can split one Hangul syllable (3 UTF-8
// bytes) over several tokens. push() appends the token's raw bytes and returns the longest
// prefix of the pending bytes that is complete UTF-8; the bytes of a character a later token may
// still complete are held back, so no U+FFFD is ever produced for them. Bytes that can never be
// valid (a stray continuation byte, an invalid lead) become U+FFFD at once, as decode() does.
// The single space SentencePiece puts before the first word of a sequence is stripped when the
// stream starts a sequence (strip_leading_space).
//
// Thread-safety: one instance per request, used by one thread.
#pragma once

#include <functional>
#include <string>

namespace ktl {

class IncrementalDetokenizer {
 public:
  // token_bytes(id): the raw bytes of a token (Tokenizer::token_bytes in the engine).
  IncrementalDetokenizer(std::function<std::string(int)> token_bytes, bool strip_leading_space);

  // Returns the newly complete text (possibly empty).
  std::string push(int token);
  // End of stream: whatever is pending, incomplete characters as U+FFFD.
  std::string flush();
  bool has_pending() const { return !pending_.empty(); }

 private:
  std::function<std::string(int)> token_bytes_;
  bool strip_leading_space_;
  bool started_ = false;  // a non-empty token was seen
  std::string pending_;   // bytes not yet emitted
};

// Length of the longest prefix of `s` that ends on a character boundary, treating a trailing
// incomplete-but-valid sequence as pending. Invalid bytes are replaced into `out` as U+FFFD.
// Appends the complete part to `out` and returns how many bytes of `s` it consumed.
size_t consume_complete_utf8(const std::string& s, std::string* out);

}  // namespace ktl
