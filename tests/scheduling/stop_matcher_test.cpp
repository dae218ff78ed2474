#include "core/scheduling/stop_matcher.h"

#include <gtest/gtest.h>

#include "core/scheduling/incremental_detokenizer.h"

namespace ktl {
namespace {

std::string run(StopMatcher& m, const std::vector<std::string>& chunks,
                std::vector<std::string>* emitted) {
  std::string out;
  for (const auto& c : chunks) {
    std::string e = m.push(c);
    if (emitted) emitted->push_back(e);
    out += e;
    if (m.stopped()) return out;
  }
  return out + m.flush();
}

TEST(StopMatcher, StopStraddlingChunksIsCutExactly) {
  StopMatcher m({"###"});
  std::vector<std::string> emitted;
  EXPECT_EQ(run(m, {"hello #", "#", "# world"}, &emitted), "hello ");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "###");
  // Nothing from the stop string was ever emitted, even partially.
  for (const auto& e : emitted) EXPECT_EQ(e.find('#'), std::string::npos);
}

TEST(StopMatcher, ReleasesAHeldTailThatStopsMatching) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("the E"), "the ");
  EXPECT_EQ(m.push("N"), "");
  EXPECT_EQ(m.push("X."), "ENX.");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("E"), "");
  EXPECT_EQ(m.flush(), "E");  // end of stream: the held tail is real text
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"다.", "요"});
  EXPECT_EQ(run(m, {"좋아", "요. 그렇", "습니다."}, nullptr), "좋아");
  EXPECT_EQ(m.matched(), "요");
}

TEST(StopMatcher, KoreanStopAcrossByteFallbackTokens) {
  // Stop "니다" arrives one byte-fallback token at a time through the detokenizer.
  auto bytes = [](int id) { return std::string(1, static_cast<char>(id)); };
  IncrementalDetokenizer d(bytes, false);
  StopMatcher m({"니다"});
  const std::string text = "모델입니다 그리고";
  std::string out;
  for (unsigned char c : text) {
    out += m.push(d.push(c));
    if (m.stopped()) break;
  }
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "모델입");
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_EQ(m.flush(), "");
}

}  // namespace
}  // namespace ktl
