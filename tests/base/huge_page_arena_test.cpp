// HugePageArena: aligned, disjoint, writable allocations; big requests get a chunk of their own;
// on Linux with THP on, the memory is eligible for huge pages (/proc/self/smaps says so; whether
// the kernel finds free 2 MB pages at that moment is not the arena's to promise).
#include "core/base/huge_page_arena.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/support/smaps.h"

namespace ktl {
namespace {

using testing::thp_eligible;

TEST(HugePageArena, AllocationsAreAlignedDisjointAndWritable) {
  HugePageArena arena(4u << 20);
  std::vector<std::pair<char*, size_t>> got;
  for (size_t n : {1u, 100u, 4096u, 3u << 20, 64u, 777u}) {
    for (size_t align : {1u, 64u, 4096u}) {
      char* p = static_cast<char*>(arena.allocate(n, align));
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
      std::memset(p, int(got.size() & 0xff), n);
      got.push_back({p, n});
    }
  }
  for (size_t i = 0; i < got.size(); ++i) {  // every byte still holds what its owner wrote
    for (size_t j = 0; j < got[i].second; j += 97) EXPECT_EQ(got[i].first[j], char(i & 0xff));
    for (size_t k = i + 1; k < got.size(); ++k) {
      const bool apart = got[i].first + got[i].second <= got[k].first ||
                         got[k].first + got[k].second <= got[i].first;
      EXPECT_TRUE(apart) << i << " overlaps " << k;
    }
  }
  EXPECT_GE(arena.bytes_allocated(), 3 * ((3u << 20) + 4096 + 777 + 100 + 64 + 1));
  EXPECT_GE(arena.bytes_reserved(), arena.bytes_allocated());
}

TEST(HugePageArena, ABigRequestGetsAChunkOfItsOwnAlignedToAHugePage) {
  HugePageArena arena(2u << 20);
  char* first = static_cast<char*>(arena.allocate(10));
  const size_t big = (5u << 20) + 3;
  char* p = static_cast<char*>(arena.allocate(big));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % HugePageArena::kHugePage, 0u);
  p[0] = 1;
  p[big - 1] = 2;
  EXPECT_EQ(arena.bytes_reserved(), (2u << 20) + (6u << 20));
  // The first chunk's tail still takes small requests.
  char* small = static_cast<char*>(arena.allocate(100));
  EXPECT_EQ(small, first + 64);
  EXPECT_EQ(arena.bytes_reserved(), (2u << 20) + (6u << 20));
}

TEST(HugePageArena, MemoryIsEligibleForHugePagesWhenTheOsHasThem) {
  if (!transparent_huge_pages_enabled()) GTEST_SKIP() << "transparent huge pages are off here";
  HugePageArena arena;
  EXPECT_TRUE(arena.huge_pages_advised());
  char* p = static_cast<char*>(arena.allocate(8u << 20));
  std::memset(p, 1, 8u << 20);
  const int eligible = thp_eligible(p);
  if (eligible < 0) GTEST_SKIP() << "this kernel's smaps has no THPeligible";
  EXPECT_EQ(eligible, 1);
}

}  // namespace
}  // namespace ktl
