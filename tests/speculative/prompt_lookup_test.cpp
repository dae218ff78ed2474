#include "core/speculative/prompt_lookup.h"

#include <gtest/gtest.h>

namespace ktl {
namespace {

TEST(PromptLookup, ProposesWhatFollowedTheLatestEarlierMatch) {
  // ... 7 8 9 | 1 2 3 | 4 5 | 1 2 3 -> the suffix "1 2 3" occurred at 3; 4 5 1 followed.
  const std::vector<int> t = {7, 8, 9, 1, 2, 3, 4, 5, 1, 2, 3};
  EXPECT_EQ(prompt_lookup(t, 3, 1, 3), (std::vector<int>{4, 5, 1}));
  // Past the end the copy repeats its period (4 5 1 2 3).
  EXPECT_EQ(prompt_lookup(t, 3, 1, 7), (std::vector<int>{4, 5, 1, 2, 3, 4, 5}));
}

TEST(PromptLookup, PrefersTheLongestNgramThenTheLatestPosition) {
  // "2 3" occurs at 1 (followed by 9) and, as part of "1 2 3", at 5 (followed by 6).
  const std::vector<int> t = {1, 2, 3, 9, 0, 1, 2, 3, 6, 4, 1, 2, 3};
  EXPECT_EQ(prompt_lookup(t, 3, 1, 1), (std::vector<int>{6}));
  // Only bigrams: "2 3" latest at 6 -> 6 follows.
  EXPECT_EQ(prompt_lookup(t, 2, 2, 1), (std::vector<int>{6}));
  const std::vector<int> u = {5, 2, 3, 9, 4, 2, 3};  // "4 2 3" never recurs, "2 3" does
  EXPECT_EQ(prompt_lookup(u, 3, 1, 2), (std::vector<int>{9, 4}));
}

TEST(PromptLookup, NothingWithoutARecurringSuffix) {
  EXPECT_TRUE(prompt_lookup({1, 2, 3, 4}, 3, 1, 4).empty());
  EXPECT_TRUE(prompt_lookup({1, 2, 1, 3}, 3, 2, 4).empty());            // "1 3" never recurs; min 2
  EXPECT_EQ(prompt_lookup({1, 2, 1, 3}, 3, 1, 4), std::vector<int>{});  // "3" is new
  EXPECT_TRUE(prompt_lookup({4}, 3, 1, 4).empty());
  EXPECT_TRUE(prompt_lookup({}, 3, 1, 4).empty());
  EXPECT_TRUE(prompt_lookup({1, 1, 1}, 2, 1, 0).empty());
}

TEST(PromptLookup, RepeatedTokenRunsContinue) {
  EXPECT_EQ(prompt_lookup({5, 5, 5, 5}, 3, 1, 3), (std::vector<int>{5, 5, 5}));
  EXPECT_EQ(prompt_lookup({1, 2, 1, 2, 1}, 2, 1, 4), (std::vector<int>{2, 1, 2, 1}));
}

}  // namespace
}  // namespace ktl
