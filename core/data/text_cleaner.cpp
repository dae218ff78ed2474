#include "core/data/text_cleaner.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <regex>

#include "core/base/utf8_util.h"
#include "core/data/html_text.h"

namespace ktl {

const char* drop_reason_name(DropReason r) {
  switch (r) {
    case DropReason::kKept:
      return "kept";
    case DropReason::kEmpty:
      return "empty";
    case DropReason::kTooShort:
      return "too_short";
    case DropReason::kTooLong:
      return "too_long";
    case DropReason::kLowHangul:
      return "low_hangul";
  }
  return "?";
}

std::string TextCleaner::nfc(std::string_view s) {
  // utf8proc wants NUL-terminated input; NULs were removed earlier or are dropped here.
  std::string z(s);
  z.erase(std::remove(z.begin(), z.end(), '\0'), z.end());
  utf8proc_uint8_t* r = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(z.c_str()));
  if (!r) return z;  // invalid input: leave it to the caller's validation
  std::string out(reinterpret_cast<char*>(r));
  std::free(r);
  return out;
}

namespace {

bool is_space_like(int32_t c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F || c == 0x3000 || c == 0x85;
}

// Characters that carry nothing visible: C0/C1 controls (other than \n and space-likes),
// format characters (zero-width space, bidi marks, BOM, soft hyphen), the replacement and
// object-replacement characters, and private-use code points.
bool is_invisible(int32_t c) {
  if (c == '\n' || is_space_like(c)) return false;
  if (c == 0x200D) return false;  // zero-width joiner: part of emoji sequences
  if (c == 0xFFFD || c == 0xFFFC) return true;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CN:
      return true;
    default:
      return false;
  }
}

bool is_letter(int32_t c) {
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string TextCleaner::remove_invisible(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    int32_t c = utf8::next(s, i);
    if (c < 0 || is_invisible(c)) continue;
    out.append(s.substr(at, i - at));
  }
  return out;
}

std::string TextCleaner::collapse_whitespace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool pending_space = false, pending_newline = false;
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    int32_t c = utf8::next(s, i);
    if (c == '\n') {
      pending_newline = true;
      pending_space = false;
    } else if (is_space_like(c)) {
      pending_space = true;
    } else {
      if (!out.empty()) {
        if (pending_newline)
          out += '\n';
        else if (pending_space)
          out += ' ';
      }
      pending_space = pending_newline = false;
      out.append(s.substr(at, i - at));
    }
  }
  return out;
}

std::string TextCleaner::squeeze(std::string_view s, int max_run) {
  if (max_run <= 0) return std::string(s);
  std::string out;
  out.reserve(s.size());
  int32_t prev = -2;
  int run = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    int32_t c = utf8::next(s, i);
    run = (c == prev) ? run + 1 : 1;
    prev = c;
    if (run <= max_run) out.append(s.substr(at, i - at));
  }
  return out;
}

std::string TextCleaner::mask_urls_and_emails(std::string_view s) {
  static const std::regex url(R"(((https?|ftp)://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+)",
                              std::regex::icase);
  static const std::regex email(R"([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})");
  std::string out = std::regex_replace(std::string(s), url, "<url>");
  return std::regex_replace(out, email, "<email>");
}

double TextCleaner::hangul_share(std::string_view s) {
  size_t letters = 0, hangul = 0;
  for (size_t i = 0; i < s.size();) {
    int32_t c = utf8::next(s, i);
    if (c < 0) continue;
    if (utf8::is_hangul(c)) {
      ++hangul;
      ++letters;
    } else if (is_letter(c)) {
      ++letters;
    }
  }
  return letters ? static_cast<double>(hangul) / letters : 0.0;
}

std::string TextCleaner::keep_hangul_lines(std::string_view s, double min_share) {
  std::string out;
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string_view::npos) nl = s.size();
    std::string_view line = s.substr(start, nl - start);
    if (hangul_share(line) >= min_share && hangul_share(line) > 0) {
      if (!out.empty()) out += '\n';
      out.append(line);
    }
    start = nl + 1;
  }
  return out;
}

CleanResult TextCleaner::clean(std::string_view raw) const {
  CleanResult r;
  std::string t = remove_invisible(raw);  // also drops invalid bytes and NULs
  if (cfg_.strip_html && (t.find('<') != std::string::npos || t.find('&') != std::string::npos))
    t = strip_html_tags(t);
  t = nfc(t);
  t = remove_invisible(t);  // entities may have produced some
  if (cfg_.mask_urls) t = mask_urls_and_emails(t);
  t = collapse_whitespace(t);
  if (cfg_.squeeze_repeats > 0) t = squeeze(t, cfg_.squeeze_repeats);
  if (cfg_.min_line_hangul_share > 0) t = keep_hangul_lines(t, cfg_.min_line_hangul_share);
  r.text = std::move(t);
  const size_t n = utf8::count_chars(r.text);
  if (n == 0)
    r.reason = DropReason::kEmpty;
  else if (n < cfg_.min_chars)
    r.reason = DropReason::kTooShort;
  else if (n > cfg_.max_chars)
    r.reason = DropReason::kTooLong;
  else if (cfg_.min_hangul_share > 0 && hangul_share(r.text) < cfg_.min_hangul_share)
    r.reason = DropReason::kLowHangul;
  return r;
}

}  // namespace ktl
