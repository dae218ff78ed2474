#include "core/data/text_cleaner.h"

#include <gtest/gtest.h>

namespace {

using ktl::CleanerConfig;
using ktl::DropReason;
using ktl::TextCleaner;

TEST(TextCleaner, StripsHtmlTagsAndEntities) {
  TextCleaner c;
  auto r = c.clean("<p>안녕하세요 &amp; <b>반갑습니다</b>&#33;</p> &lt;책&gt; 제목");
  EXPECT_EQ(r.text, "안녕하세요 & 반갑습니다!\n<책> 제목");
  CleanerConfig keep;
  keep.strip_html = false;
  EXPECT_EQ(TextCleaner(keep).clean("<b>굵게</b> 쓴 글자").text, "<b>굵게</b> 쓴 글자");
}

TEST(TextCleaner, NfcComposesJamoButKeepsCompatibilityJamo) {
  // 한 written as conjoining jamo U+1112 U+1161 U+11AB, then 글 precomposed.
  const std::string decomposed = "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB글";
  EXPECT_EQ(TextCleaner::nfc(decomposed), "한글");
  EXPECT_EQ(TextCleaner::nfc("ㅋㅋㅋ ㅠㅠ ㄱㄴ"), "ㅋㅋㅋ ㅠㅠ ㄱㄴ");
  auto r = TextCleaner().clean("진짜 웃기다 ㅋㅋ 근데 슬퍼 ㅠㅠ");
  EXPECT_EQ(r.text, "진짜 웃기다 ㅋㅋ 근데 슬퍼 ㅠㅠ");
  EXPECT_TRUE(r.kept());
}

TEST(TextCleaner, RemovesControlAndInvisibleCharacters) {
  // zero-width space, BOM, bidi override, soft hyphen, a C0 control, a C1 control
  const std::string s = "\xEF\xBB\xBF가\xE2\x80\x8B나\xE2\x80\xAE다\xC2\xAD라\x07마\xC2\x85바";
  EXPECT_EQ(TextCleaner::remove_invisible(s), "가나다라마\xC2\x85바");  // NEL is whitespace
  EXPECT_EQ(TextCleaner().clean(s).text, "가나다라마 바");
  // Emoji with a zero-width joiner keep the joiner.
  EXPECT_EQ(TextCleaner::remove_invisible("👩\xE2\x80\x8D💻"), "👩\xE2\x80\x8D💻");
}

TEST(TextCleaner, CollapsesWhitespace) {
  EXPECT_EQ(TextCleaner::collapse_whitespace("  가  나\t\t다 \r\n\n\n  라\xE3\x80\x80마 \n"),
            "가 나 다\n라 마");
  EXPECT_EQ(TextCleaner::collapse_whitespace("\xC2\xA0"), "");
}

TEST(TextCleaner, OptionalSqueeze) {
  EXPECT_EQ(TextCleaner::squeeze("ㅋㅋㅋㅋㅋㅋ 와아아아아 !!!!!", 3), "ㅋㅋㅋ 와아아아 !!!");
  CleanerConfig cfg;
  EXPECT_EQ(TextCleaner(cfg).clean("ㅋㅋㅋㅋㅋ 재밌다").text,
            "ㅋㅋㅋㅋㅋ 재밌다");  // off by default
  cfg.squeeze_repeats = 2;
  EXPECT_EQ(TextCleaner(cfg).clean("ㅋㅋㅋㅋㅋ 재밌다").text, "ㅋㅋ 재밌다");
}

TEST(TextCleaner, OptionalUrlAndEmailMasking) {
  const std::string s =
      "자세한 내용은 https://example.com/a?b=1 또는 www.test.kr 참고, 문의 "
      "hong.gildong@example.co.kr 로";
  EXPECT_EQ(TextCleaner::mask_urls_and_emails(s),
            "자세한 내용은 <url> 또는 <url> 참고, 문의 <email> 로");
  CleanerConfig cfg;
  EXPECT_NE(TextCleaner(cfg).clean(s).text.find("https://"), std::string::npos);
  cfg.mask_urls = true;
  cfg.strip_html = true;  // "<url>" produced after stripping stays
  EXPECT_EQ(TextCleaner(cfg).clean(s).text.find("https://"), std::string::npos);
  EXPECT_NE(TextCleaner(cfg).clean(s).text.find("<url>"), std::string::npos);
}

TEST(TextCleaner, LengthFilters) {
  CleanerConfig cfg;
  cfg.min_chars = 5;
  cfg.max_chars = 10;
  TextCleaner c(cfg);
  EXPECT_EQ(c.clean("   ").reason, DropReason::kEmpty);
  EXPECT_EQ(c.clean("안녕").reason, DropReason::kTooShort);
  EXPECT_EQ(c.clean("안녕하세요 여러분").reason, DropReason::kKept);
  EXPECT_EQ(c.clean("안녕하세요 여러분 반갑습니다").reason, DropReason::kTooLong);
}

TEST(TextCleaner, HangulShareFilter) {
  EXPECT_DOUBLE_EQ(TextCleaner::hangul_share("가나 ab"), 0.5);
  EXPECT_DOUBLE_EQ(TextCleaner::hangul_share("123 !!"), 0.0);
  CleanerConfig cfg;
  cfg.min_hangul_share = 0.5;
  TextCleaner c(cfg);
  EXPECT_EQ(c.clean("This is an English sentence with 한국어").reason, DropReason::kLowHangul);
  EXPECT_EQ(c.clean("한국어 문장에 English 조금, 숫자 12345").reason, DropReason::kKept);
  cfg.min_hangul_share = 0;
  EXPECT_TRUE(TextCleaner(cfg).clean("Only English here").kept());
}

TEST(TextCleaner, LineHangulFilter) {
  EXPECT_EQ(
      TextCleaner::keep_hangul_lines("Sub Main\n대화 상자를 엽니다.\nEnd Sub\n관련 주제", 0.3),
      "대화 상자를 엽니다.\n관련 주제");
  CleanerConfig cfg;
  cfg.min_line_hangul_share = 0.3;
  EXPECT_EQ(TextCleaner(cfg).clean("Opening a Dialog\n대화 상자를 여는 방법입니다.").text,
            "대화 상자를 여는 방법입니다.");
}

}  // namespace
