#include "core/scheduling/incremental_detokenizer.h"

namespace ktl {

namespace {
const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Expected length of a sequence starting with `lead` (0 = invalid lead byte).
int sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Whether byte `b` may follow at index `i` (1-based within the sequence) after `lead`.
bool valid_continuation(unsigned char lead, int i, unsigned char b) {
  if ((b & 0xC0) != 0x80) return false;
  if (i != 1) return true;
  if (lead == 0xE0) return b >= 0xA0;  // overlong
  if (lead == 0xED) return b <= 0x9F;  // surrogates
  if (lead == 0xF0) return b >= 0x90;  // overlong
  if (lead == 0xF4) return b <= 0x8F;  // > U+10FFFF
  return true;
}
}  // namespace

size_t consume_complete_utf8(const std::string& s, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char lead = static_cast<unsigned char>(s[i]);
    const int len = sequence_length(lead);
    if (len == 0) {
      out->append(kReplacement);
      ++i;
      continue;
    }
    int k = 1;
    while (k < len && i + k < s.size() &&
           valid_continuation(lead, k, static_cast<unsigned char>(s[i + k]))) {
      ++k;
    }
    if (k == len) {
      out->append(s, i, len);
      i += len;
    } else if (i + k == s.size()) {
      break;  // a valid prefix cut by the end: a later token may complete it
    } else {
      out->append(kReplacement);  // broken sequence: replace its valid prefix, resume after it
      i += k;
    }
  }
  return i;
}

IncrementalDetokenizer::IncrementalDetokenizer(std::function<std::string(int)> token_bytes,
                                               bool strip_leading_space)
    : token_bytes_(std::move(token_bytes)), strip_leading_space_(strip_leading_space) {}

std::string IncrementalDetokenizer::push(int token) {
  std::string bytes = token_bytes_(token);
  if (bytes.empty()) return {};
  if (!started_) {
    started_ = true;
    if (strip_leading_space_ && bytes[0] == ' ') bytes.erase(0, 1);
  }
  pending_ += bytes;
  std::string out;
  const size_t used = consume_complete_utf8(pending_, &out);
  pending_.erase(0, used);
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out;
  const size_t used = consume_complete_utf8(pending_, &out);
  if (used < pending_.size()) out.append(kReplacement);
  pending_.clear();
  return out;
}

}  // namespace ktl
