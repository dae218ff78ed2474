#include "core/scheduling/kv_cache_manager.h"

#include <gtest/gtest.h>

#include <set>

namespace ktl {
namespace {

std::vector<int> iota_tokens(int n, int start = 100) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = start + i;
  return v;
}

TEST(KvCacheManager, AllocatesDistinctBlocksAndRefusesWhenFull) {
  KvCacheManager kv(4, 4);
  ASSERT_TRUE(kv.allocate_slots(1, 5));  // 2 blocks
  ASSERT_TRUE(kv.allocate_slots(2, 8));  // 2 blocks
  EXPECT_EQ(kv.num_free_blocks(), 0);
  std::set<int> ids(kv.block_table(1).begin(), kv.block_table(1).end());
  ids.insert(kv.block_table(2).begin(), kv.block_table(2).end());
  EXPECT_EQ(ids.size(), 4u);
  // Refusal changes nothing.
  EXPECT_FALSE(kv.allocate_slots(3, 1));
  EXPECT_FALSE(kv.allocate_slots(1, 9));
  EXPECT_EQ(kv.block_table(1).size(), 2u);
  // Growing within the last block needs no new block.
  EXPECT_TRUE(kv.allocate_slots(1, 8));
  kv.free(1);
  EXPECT_EQ(kv.num_free_blocks(), 2);
  EXPECT_TRUE(kv.allocate_slots(3, 8));
}

TEST(KvCacheManager, SharesCachedPrefixWithRefCounts) {
  KvCacheManager kv(8, 4);
  auto a = iota_tokens(10);  // 2 full blocks + 2 tokens
  ASSERT_EQ(kv.attach_cached_prefix(1, a), 0);
  ASSERT_TRUE(kv.allocate_slots(1, 10));
  kv.cache_full_blocks(1, a, 10);
  EXPECT_EQ(kv.stats().cached_blocks, 2);

  // Same first 8 tokens, different tail.
  auto b = a;
  b[9] = 7;
  EXPECT_EQ(kv.attach_cached_prefix(2, b), 8);
  ASSERT_TRUE(kv.allocate_slots(2, 10));
  const auto& ta = kv.block_table(1);
  const auto& tb = kv.block_table(2);
  EXPECT_EQ(ta[0], tb[0]);
  EXPECT_EQ(ta[1], tb[1]);
  EXPECT_NE(ta[2], tb[2]);
  EXPECT_EQ(kv.ref_count(ta[0]), 2);
  EXPECT_EQ(kv.ref_count(ta[2]), 1);

  // A different first block breaks the chain: the second block is not matched alone.
  auto c = a;
  c[0] = 5;
  EXPECT_EQ(kv.attach_cached_prefix(3, c), 0);
  kv.free(3);

  KvCacheStats s = kv.stats();
  EXPECT_EQ(s.prefix_hits, 8u);
  EXPECT_EQ(s.prefix_queries, 30u);
  kv.free(1);
  EXPECT_EQ(kv.ref_count(tb[0]), 1);
  kv.free(2);
  EXPECT_EQ(kv.num_free_blocks(), 8);
}

TEST(KvCacheManager, LeavesOneTokenToCompute) {
  KvCacheManager kv(8, 4);
  auto a = iota_tokens(8);
  kv.attach_cached_prefix(1, a);
  ASSERT_TRUE(kv.allocate_slots(1, 8));
  kv.cache_full_blocks(1, a, 8);
  kv.free(1);
  // Both blocks are cached, but the whole prompt cannot come from the cache.
  EXPECT_EQ(kv.attach_cached_prefix(2, a), 4);
}

TEST(KvCacheManager, FreedCachedBlocksRevivableUntilEvictedLru) {
  KvCacheManager kv(4, 2);
  auto a = iota_tokens(5, 10);  // blocks [10,11] [12,13] + partial
  auto b = iota_tokens(5, 50);
  kv.attach_cached_prefix(1, a);
  ASSERT_TRUE(kv.allocate_slots(1, 4));
  kv.cache_full_blocks(1, a, 4);
  kv.free(1);
  kv.attach_cached_prefix(2, b);
  ASSERT_TRUE(kv.allocate_slots(2, 4));
  kv.cache_full_blocks(2, b, 4);
  kv.free(2);
  EXPECT_EQ(kv.num_free_blocks(), 4);
  EXPECT_EQ(kv.stats().cached_blocks, 4);

  // a's blocks were freed first: they are the least recently used and get evicted first.
  ASSERT_TRUE(kv.allocate_slots(3, 2));
  EXPECT_EQ(kv.stats().evictions, 1u);
  kv.free(3);
  EXPECT_EQ(kv.attach_cached_prefix(4, b), 4);  // b survived
  kv.free(4);
  // a's tail block was evicted (a sequence's tail blocks are queued first); its head survives.
  EXPECT_EQ(kv.attach_cached_prefix(5, a), 2);
  kv.free(5);
  EXPECT_EQ(kv.num_free_blocks(), 4);
}

TEST(KvCacheManager, RevivingACachedBlockTakesItOffTheFreeQueue) {
  KvCacheManager kv(3, 2);
  auto a = iota_tokens(3);
  kv.attach_cached_prefix(1, a);
  ASSERT_TRUE(kv.allocate_slots(1, 3));
  kv.cache_full_blocks(1, a, 2);
  kv.free(1);
  EXPECT_EQ(kv.attach_cached_prefix(2, a), 2);
  EXPECT_EQ(kv.num_free_blocks(), 2);
  // The revived block must not be handed to anyone else.
  ASSERT_TRUE(kv.allocate_slots(3, 4));
  const int shared = kv.block_table(2)[0];
  for (int b : kv.block_table(3)) EXPECT_NE(b, shared);
  EXPECT_FALSE(kv.allocate_slots(2, 3));
}

TEST(KvCacheManager, DisabledPrefixCacheNeverHits) {
  KvCacheManager kv(4, 2, /*enable_prefix_cache=*/false);
  auto a = iota_tokens(5);
  kv.attach_cached_prefix(1, a);
  ASSERT_TRUE(kv.allocate_slots(1, 5));
  kv.cache_full_blocks(1, a, 5);
  kv.free(1);
  EXPECT_EQ(kv.attach_cached_prefix(2, a), 0);
  EXPECT_EQ(kv.stats().cached_blocks, 0);
}

// The same tokens under another salt (a LoRA adapter) have other K/V: never shared; under the
// same salt they are.
TEST(KvCacheManager, SaltsKeepPrefixesApart) {
  KvCacheManager kv(16, 4);
  auto a = iota_tokens(10);
  ASSERT_EQ(kv.attach_cached_prefix(1, a, /*salt=*/7), 0);
  ASSERT_TRUE(kv.allocate_slots(1, 10));
  kv.cache_full_blocks(1, a, 10, 7);
  EXPECT_EQ(kv.stats().cached_blocks, 2);
  EXPECT_EQ(kv.attach_cached_prefix(2, a, /*salt=*/0), 0);  // the base model
  EXPECT_EQ(kv.attach_cached_prefix(3, a, /*salt=*/8), 0);  // another adapter
  EXPECT_EQ(kv.attach_cached_prefix(4, a, /*salt=*/7), 8);  // the same adapter
  EXPECT_EQ(kv.block_table(4)[0], kv.block_table(1)[0]);
  // Published under salt 0, the same content gets blocks of its own.
  ASSERT_TRUE(kv.allocate_slots(2, 10));
  kv.cache_full_blocks(2, a, 10, 0);
  EXPECT_EQ(kv.stats().cached_blocks, 4);
  EXPECT_NE(kv.block_table(2)[0], kv.block_table(1)[0]);
  EXPECT_EQ(kv.attach_cached_prefix(5, a, 0), 8);
  EXPECT_EQ(kv.block_table(5)[0], kv.block_table(2)[0]);
}

}  // namespace
}  // namespace ktl
