#include "core/data/dataset_split.h"

#include <gtest/gtest.h>

#include <set>

namespace {

std::vector<std::string> docs(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("문서 번호 " + std::to_string(i) + " 의 내용입니다.");
  return v;
}

TEST(DatasetSplit, SizesNear98_1_1) {
  ktl::DatasetSplit s;
  int count[3] = {0, 0, 0};
  for (const auto& d : docs(20000)) ++count[int(s.assign(d))];
  EXPECT_NEAR(count[0], 19600, 150);
  EXPECT_NEAR(count[1], 200, 50);
  EXPECT_NEAR(count[2], 200, 50);
}

TEST(DatasetSplit, DeterministicPerSeedAndOrderIndependent) {
  ktl::SplitConfig a;
  a.seed = 7;
  ktl::SplitConfig b = a;
  b.seed = 8;
  ktl::DatasetSplit s1(a), s1_again(a), s2(b);
  auto v = docs(3000);
  int differ = 0;
  for (const auto& d : v) {
    EXPECT_EQ(s1.assign(d), s1_again.assign(d));
    differ += s1.assign(d) != s2.assign(d);
  }
  EXPECT_GT(differ, 20);  // another seed gives another split
  std::vector<ktl::Split> forward, backward;
  for (const auto& d : v) forward.push_back(s1.assign(d));
  for (auto it = v.rbegin(); it != v.rend(); ++it)
    backward.insert(backward.begin(), s1.assign(*it));
  EXPECT_EQ(forward, backward);
}

TEST(DatasetSplit, DisjointByConstruction) {
  ktl::DatasetSplit s;
  std::set<std::string> parts[3];
  for (const auto& d : docs(5000)) parts[int(s.assign(d))].insert(d);
  for (const auto& d : docs(5000))
    parts[int(s.assign(d))].insert(d);  // a second pass changes nothing
  size_t total = 0;
  for (auto& p : parts) total += p.size();
  EXPECT_EQ(total, 5000u);
  for (const auto& d : parts[1]) EXPECT_EQ(parts[0].count(d) + parts[2].count(d), 0u);
}

TEST(DatasetSplit, RejectsBadFractions) {
  ktl::SplitConfig c;
  c.val_fraction = 0.6;
  c.test_fraction = 0.5;
  EXPECT_THROW(ktl::DatasetSplit{c}, std::invalid_argument);
}

}  // namespace
