#include "core/scheduling/incremental_detokenizer.h"

#include <gtest/gtest.h>

#include <map>

namespace ktl {
namespace {

// A toy byte-fallback vocabulary: ids 0..255 are the bytes <0x00>..<0xFF>, 256 = "▁오늘",
// 257 = "▁날씨", 258 = control token (no bytes).
std::string token_bytes(int id) {
  if (id < 256) return std::string(1, static_cast<char>(id));
  if (id == 256) return " 오늘";
  if (id == 257) return " 날씨";
  return "";
}

std::vector<int> byte_tokens(const std::string& s) {
  std::vector<int> ids;
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

TEST(IncrementalDetokenizer, ByteFallbackKoreanReassemblesExactlyWithoutReplacement) {
  const std::string text = "안녕하세요, 한국어 모델입니다! 😀 끝.";
  IncrementalDetokenizer d(token_bytes, false);
  std::string out;
  for (int id : byte_tokens(text)) {
    const std::string piece = d.push(id);
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos);
    out += piece;
    // Whatever was emitted so far is a prefix of the text ending on a character boundary.
    ASSERT_EQ(text.compare(0, out.size(), out), 0);
  }
  EXPECT_FALSE(d.has_pending());
  out += d.flush();
  EXPECT_EQ(out, text);
}

TEST(IncrementalDetokenizer, HoldsBackIncompleteCharacters) {
  IncrementalDetokenizer d(token_bytes, false);
  const std::string han = "한";  // ED 95 9C
  EXPECT_EQ(d.push(static_cast<unsigned char>(han[0])), "");
  EXPECT_EQ(d.push(static_cast<unsigned char>(han[1])), "");
  EXPECT_EQ(d.push(258), "");  // control tokens add nothing
  EXPECT_EQ(d.push(static_cast<unsigned char>(han[2])), han);
}

TEST(IncrementalDetokenizer, StripsOnlyTheSequenceLeadingSpace) {
  IncrementalDetokenizer start(token_bytes, true);
  EXPECT_EQ(start.push(258), "");
  EXPECT_EQ(start.push(256), "오늘");
  EXPECT_EQ(start.push(257), " 날씨");
  IncrementalDetokenizer cont(token_bytes, false);  // continuing a prompt: keep the space
  EXPECT_EQ(cont.push(257), " 날씨");
}

TEST(IncrementalDetokenizer, InvalidBytesBecomeReplacementAndFlushReportsTruncation) {
  IncrementalDetokenizer d(token_bytes, false);
  EXPECT_EQ(d.push(0x80), "\xEF\xBF\xBD");  // stray continuation byte
  EXPECT_EQ(d.push(0xEA), "");
  EXPECT_EQ(d.push('a'),
            "\xEF\xBF\xBD"
            "a");  // lead byte broken by ASCII
  EXPECT_EQ(d.push(0xEA), "");
  EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");  // stream ended mid-character
}

}  // namespace
}  // namespace ktl
