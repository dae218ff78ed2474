#include "core/data/sentence_splitter.h"

#include <gtest/gtest.h>

namespace {

using V = std::vector<std::string>;

TEST(SentenceSplitter, PunctuationAndEndings) {
  ktl::SentenceSplitter s;
  EXPECT_EQ(s.split("밥을 먹었다. 그리고 잤어요! 정말요? 네… 좋아요"),
            (V{"밥을 먹었다.", "그리고 잤어요!", "정말요?", "네…", "좋아요"}));
  EXPECT_EQ(s.split("그는 \"가자!\" 하고 말했다. 끝."), (V{"그는 \"가자!\" 하고 말했다.", "끝."}));
  EXPECT_EQ(s.split("그가 \"좋다.\" 라고 했다"), (V{"그가 \"좋다.\" 라고 했다"}));
  EXPECT_EQ(s.split("(정말 그랬다.) 다음 이야기"), (V{"(정말 그랬다.)", "다음 이야기"}));
}

TEST(SentenceSplitter, DoesNotSplitDecimalsOrShortWords) {
  ktl::SentenceSplitter s;
  EXPECT_EQ(s.split("원주율은 3.14이다. 다 먹었다."), (V{"원주율은 3.14이다.", "다 먹었다."}));
}

TEST(SentenceSplitter, InformalEndingsWithoutPunctuation) {
  ktl::SentenceSplitter s;
  EXPECT_EQ(s.split("영화 재밌다 배우 연기 최고"), (V{"영화 재밌다", "배우 연기 최고"}));
  ktl::SentenceSplitterConfig cfg;
  cfg.split_on_endings = false;
  EXPECT_EQ(ktl::SentenceSplitter(cfg).split("영화 재밌다 배우 연기 최고"),
            (V{"영화 재밌다 배우 연기 최고"}));
}

TEST(SentenceSplitter, NewlinesEndSentences) {
  ktl::SentenceSplitter s;
  EXPECT_EQ(s.split("제목\n본문 첫 문장\n\n  "), (V{"제목", "본문 첫 문장"}));
  EXPECT_TRUE(s.split("   ").empty());
}

}  // namespace
