#include "core/data/sentence_splitter.h"

#include "core/base/utf8_util.h"

namespace ktl {
namespace {

bool is_terminal(int32_t c) {
  return c == '.' || c == '?' || c == '!' || c == 0x2026 /* … */ || c == 0x3002 /* 。 */ ||
         c == 0xFF01 || c == 0xFF1F || c == 0xFF0E;
}

// Brackets closing a finished sentence. Quotes are not here: quoted speech ends with a
// terminal inside the quote and then continues ("가자!" 하고 말했다).
bool is_closer(int32_t c) {
  return c == ')' || c == ']' || c == 0xFF09 || c == '~';
}

bool is_final_ending(int32_t c) {
  return c == 0xB2E4 /* 다 */ || c == 0xC694 /* 요 */ || c == 0xAE4C /* 까 */ ||
         c == 0xC8E0 /* 죠 */;
}

bool is_space(int32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void push_trimmed(std::vector<std::string>& out, std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return;
  size_t e = s.find_last_not_of(" \t\r\n");
  out.emplace_back(s.substr(b, e - b + 1));
}

}  // namespace

std::vector<std::string> SentenceSplitter::split(std::string_view text) const {
  std::vector<std::string> out;
  size_t start = 0;
  int32_t prev = -1, prev2 = -1;  // the two code points before the current one
  for (size_t i = 0; i < text.size();) {
    const size_t at = i;
    int32_t c = utf8::next(text, i);
    if (c == '\n') {
      push_trimmed(out, text.substr(start, at - start));
      start = i;
    } else if (is_space(c) && at > start) {
      // Walk back over closers to find what ended the word.
      bool split = false;
      if (is_terminal(prev) || is_closer(prev)) {
        size_t j = at;
        int32_t last = -1;
        while (j > start) {  // find the last non-closer code point before the space
          size_t k = j - 1;
          while (k > start && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
          size_t kk = k;
          last = utf8::next(text, kk);
          if (!is_closer(last)) break;
          j = k;
        }
        split = is_terminal(last);
      } else if (cfg_.split_on_endings && is_final_ending(prev) &&
                 utf8::is_hangul_syllable(prev2)) {
        split = true;
      }
      if (split) {
        push_trimmed(out, text.substr(start, at - start));
        start = i;
      }
    }
    prev2 = prev;
    prev = c;
  }
  push_trimmed(out, text.substr(start));
  return out;
}

}  // namespace ktl
