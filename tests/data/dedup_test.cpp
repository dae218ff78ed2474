#include "core/data/dedup.h"

#include <gtest/gtest.h>

#include "tests/support/korean_fixture.h"

namespace {

TEST(ExactDedup, SameTextIgnoringWhitespaceIsDuplicate) {
  ktl::ExactDedup d;
  EXPECT_FALSE(d.is_duplicate("나는 학교에 간다."));
  EXPECT_TRUE(d.is_duplicate("나는 학교에 간다."));
  EXPECT_TRUE(d.is_duplicate("나는  학교에\n간다."));
  EXPECT_FALSE(d.is_duplicate("나는 학교에 갔다."));
  EXPECT_EQ(d.size(), 2u);
}

TEST(NearDedup, SignatureSimilarityTracksOverlap) {
  ktl::NearDedup d;
  const std::string a =
      "오늘은 날씨가 정말 좋아서 친구들과 함께 한강 공원에 가서 자전거를 타고 치킨을 먹었다. "
      "저녁에는 집에 돌아와서 영화를 한 편 보고 일찍 잠자리에 들었다.";
  const std::string b = a + " 정말 즐거웠다.";  // small edit
  const std::string c =
      "경제 뉴스에 따르면 올해 수출은 반도체와 자동차를 중심으로 크게 늘었다고 한다.";
  const double ab = ktl::NearDedup::similarity(d.signature(a), d.signature(b));
  const double ac = ktl::NearDedup::similarity(d.signature(a), d.signature(c));
  EXPECT_GT(ab, 0.8);
  EXPECT_LT(ac, 0.2);
  EXPECT_DOUBLE_EQ(ktl::NearDedup::similarity(d.signature(a), d.signature(a)), 1.0);
}

TEST(NearDedup, RemovesNearDuplicatesKeepsDistinct) {
  ktl::NearDedupConfig cfg;
  cfg.threshold = 0.7;
  ktl::NearDedup d(cfg);
  EXPECT_EQ(d.bands() * d.rows(), cfg.num_perm);
  const std::string base =
      "이 영화는 배우들의 연기가 훌륭하고 음악도 아름다워서 끝까지 지루하지 않게 볼 수 있었다. "
      "특히 마지막 장면의 반전은 오랫동안 기억에 남을 것 같다.";
  EXPECT_FALSE(d.is_duplicate(base));
  EXPECT_TRUE(d.is_duplicate(base + " 추천합니다!"));
  EXPECT_TRUE(d.is_duplicate(
      "이 영화는 배우들의 연기가 훌륭하고 음악도 아름다워서 끝까지 지루하지 않게 볼 수 있었다. "
      "특히 마지막 장면의 반전은 오랫동안 기억에 남을 것 같아요."));
  // Generated sentences differ in several words: none is a near duplicate of another here.
  int kept = 0;
  for (const auto& s : ktl::testing::korean_sentences(200, 11))
    kept += !d.is_duplicate(s + " " + s);
  EXPECT_GT(kept, 100);
}

}  // namespace
