// TextCleaner: normalises one document and decides whether to keep it.
// Steps, in order: HTML tags/entities, Unicode NFC (canonical only, so compatibility jamo such as
// ㅋㅋ and ㅠㅠ stay as they are), control/invisible character removal, whitespace collapse
// (spaces within lines, no blank lines inside a document), optional repeated-character squeeze,
// optional URL/e-mail masking, optional removal of lines with too little Hangul, then the
// length and Hangul-share filters.
// Thread-safety: a TextCleaner is immutable after construction; clean() is safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ktl {

struct CleanerConfig {
  bool strip_html = true;  // remove <tags> and decode &entities; in plain text and JSONL
  int squeeze_repeats = 0;  // >0: cap runs of one character at this many (ㅋㅋㅋㅋㅋ -> ㅋㅋㅋ)
  bool mask_urls = false;         // replace URLs with "<url>" and e-mail addresses with "<email>"
  size_t min_chars = 5;           // drop documents shorter than this (code points, after cleaning)
  size_t max_chars = 1000000;     // drop documents longer than this
  double min_hangul_share = 0.5;  // drop when Hangul / all letters is below this (0 = off)
  double min_line_hangul_share = 0;  // first drop lines below this share (0 = off); for
                                     // partly translated pages such as LibreOffice's help
};

enum class DropReason { kKept, kEmpty, kTooShort, kTooLong, kLowHangul };
const char* drop_reason_name(DropReason r);

struct CleanResult {
  std::string text;  // cleaned text (also filled when dropped, for inspection)
  DropReason reason = DropReason::kKept;
  bool kept() const { return reason == DropReason::kKept; }
};

class TextCleaner {
 public:
  explicit TextCleaner(CleanerConfig cfg = {}) : cfg_(cfg) {}

  CleanResult clean(std::string_view raw) const;

  // The individual rules, exposed for tests and reuse. Inputs must be valid UTF-8.
  static std::string nfc(std::string_view s);
  static std::string remove_invisible(std::string_view s);  // controls, zero-width, bidi, BOM
  static std::string collapse_whitespace(std::string_view s);
  static std::string squeeze(std::string_view s, int max_run);
  static std::string mask_urls_and_emails(std::string_view s);
  // Hangul code points / letter code points (0 when there are no letters).
  static double hangul_share(std::string_view s);
  // Keeps the lines whose hangul_share() reaches min_share (lines without letters go too).
  static std::string keep_hangul_lines(std::string_view s, double min_share);

  const CleanerConfig& config() const { return cfg_; }

 private:
  CleanerConfig cfg_;
};

}  // namespace ktl
