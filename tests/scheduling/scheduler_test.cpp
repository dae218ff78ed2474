#include "core/scheduling/scheduler.h"

#include <gtest/gtest.h>

namespace ktl {
namespace {

std::vector<int> prompt(int n, int base) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = base + i;
  return v;
}

// Plays the engine: completes the step and appends a token to every sampling sequence.
void run_step(Scheduler& s, const SchedulerOutput& out, int token = 7) {
  s.complete_step(out);
  for (const auto& q : out.seqs) {
    if (q.sample) s.append_token(q.id, token);
  }
}

const ScheduledSeq* find(const SchedulerOutput& out, uint64_t id) {
  for (const auto& q : out.seqs) {
    if (q.id == id) return &q;
  }
  return nullptr;
}

TEST(Scheduler, ChunksPrefillToTheTokenBudgetThenDecodesOneTokenPerStep) {
  KvCacheManager kv(64, 4);
  Scheduler s({/*max_num_seqs=*/4, /*max_batched_tokens=*/8}, &kv);
  s.add(1, prompt(20, 100));
  auto o1 = s.schedule();
  ASSERT_EQ(o1.seqs.size(), 1u);
  EXPECT_EQ(o1.seqs[0].start, 0);
  EXPECT_EQ(o1.seqs[0].num_tokens, 8);
  EXPECT_FALSE(o1.seqs[0].sample);
  EXPECT_EQ(o1.seqs[0].block_table.size(), 2u);
  run_step(s, o1);
  auto o2 = s.schedule();
  EXPECT_EQ(o2.seqs[0].start, 8);
  EXPECT_EQ(o2.seqs[0].num_tokens, 8);
  run_step(s, o2);
  auto o3 = s.schedule();
  EXPECT_EQ(o3.seqs[0].num_tokens, 4);
  EXPECT_TRUE(o3.seqs[0].sample);
  run_step(s, o3);
  auto o4 = s.schedule();  // decode
  EXPECT_EQ(o4.seqs[0].start, 20);
  EXPECT_EQ(o4.seqs[0].num_tokens, 1);
  EXPECT_TRUE(o4.seqs[0].sample);
  EXPECT_EQ(o4.seqs[0].block_table.size(), 6u);
}

TEST(Scheduler, FcfsWithBudgetsAndMaxSeqs) {
  KvCacheManager kv(64, 4);
  Scheduler s({/*max_num_seqs=*/2, /*max_batched_tokens=*/10}, &kv);
  s.add(1, prompt(6, 100));
  s.add(2, prompt(6, 200));
  s.add(3, prompt(2, 300));
  auto o1 = s.schedule();
  // Request 1 whole, request 2 chunked to the remaining 4 tokens; 3 waits (budget, max seqs).
  ASSERT_EQ(o1.seqs.size(), 2u);
  EXPECT_EQ(o1.seqs[0].id, 1u);
  EXPECT_EQ(o1.seqs[0].num_tokens, 6);
  EXPECT_EQ(o1.seqs[1].id, 2u);
  EXPECT_EQ(o1.seqs[1].num_tokens, 4);
  EXPECT_EQ(o1.num_tokens, 10);
  EXPECT_EQ(s.num_waiting(), 1);
  run_step(s, o1);
  auto o2 = s.schedule();
  EXPECT_EQ(find(o2, 1)->num_tokens, 1);
  EXPECT_EQ(find(o2, 2)->num_tokens, 2);
  EXPECT_EQ(find(o2, 3), nullptr);  // max_num_seqs = 2
  run_step(s, o2);
  s.finish(1);
  auto o3 = s.schedule();
  ASSERT_NE(find(o3, 3), nullptr);
  EXPECT_EQ(find(o3, 3)->num_tokens, 2);
}

TEST(Scheduler, PreemptsNewestWhenBlocksRunOutAndRecomputesLater) {
  KvCacheManager kv(4, 4, /*enable_prefix_cache=*/false);
  Scheduler s({4, 64}, &kv);
  s.add(1, prompt(4, 100));  // 1 block, grows to 2 at the first decode
  s.add(2, prompt(7, 200));  // 2 blocks, still 2 after its first token
  s.add(3, prompt(4, 300));  // 1 block
  auto o1 = s.schedule();
  ASSERT_EQ(o1.seqs.size(), 3u);
  EXPECT_EQ(kv.num_free_blocks(), 0);
  run_step(s, o1);
  // Request 1 needs a 2nd block: the newest (3) is preempted, not 1 or 2.
  auto o2 = s.schedule();
  ASSERT_EQ(o2.preempted.size(), 1u);
  EXPECT_EQ(o2.preempted[0], 3u);
  EXPECT_EQ(s.find(3)->state, RequestState::kPreempted);
  EXPECT_EQ(s.find(3)->num_computed_tokens, 0);
  EXPECT_EQ(s.find(3)->tokens.size(), 5u);  // keeps its generated token
  EXPECT_EQ(find(o2, 2)->num_tokens, 1);
  EXPECT_EQ(find(o2, 3), nullptr);
  EXPECT_EQ(s.num_preemptions(), 1u);
  run_step(s, o2);
  // When 2 finishes, 3 comes back and recomputes prompt + its generated token.
  s.finish(2);
  auto o3 = s.schedule();
  const ScheduledSeq* r3 = find(o3, 3);
  ASSERT_NE(r3, nullptr);
  EXPECT_EQ(r3->start, 0);
  EXPECT_EQ(r3->num_tokens, 5);
  EXPECT_TRUE(r3->sample);
  EXPECT_EQ(s.find(3)->state, RequestState::kRunning);
}

TEST(Scheduler, PreemptsItselfWhenItIsTheNewest) {
  KvCacheManager kv(2, 4, false);
  Scheduler s({4, 64}, &kv);
  s.add(1, prompt(3, 100));
  s.add(2, prompt(4, 200));
  auto o1 = s.schedule();
  run_step(s, o1);
  auto o2 = s.schedule();
  // 2 (the newest) needs a second block and none is free: it preempts itself; 1 decodes.
  EXPECT_EQ(o2.preempted, std::vector<uint64_t>{2});
  ASSERT_EQ(o2.seqs.size(), 1u);
  EXPECT_EQ(o2.seqs[0].id, 1u);
}

TEST(Scheduler, CancelFreesBlocksAtOnceInAnyState) {
  KvCacheManager kv(16, 4);
  Scheduler s({1, 64}, &kv);
  s.add(1, prompt(10, 100));
  s.add(2, prompt(10, 200));
  auto o1 = s.schedule();
  run_step(s, o1);
  EXPECT_LT(kv.num_free_blocks(), 16);
  EXPECT_TRUE(s.cancel(2));  // waiting
  EXPECT_TRUE(s.cancel(1));  // running
  EXPECT_FALSE(s.cancel(1));
  EXPECT_EQ(kv.num_free_blocks(), 16);
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_TRUE(s.schedule().empty());
  // A step computed for a request cancelled meanwhile is ignored.
  s.add(3, prompt(3, 300));
  auto o2 = s.schedule();
  s.cancel(3);
  s.complete_step(o2);
  EXPECT_EQ(kv.num_free_blocks(), 16);
}

TEST(Scheduler, PrefixCacheSkipsComputedBlocks) {
  KvCacheManager kv(16, 4);
  Scheduler s({4, 64}, &kv);
  s.add(1, prompt(10, 100));
  run_step(s, s.schedule());
  s.add(2, prompt(10, 100));
  auto o = s.schedule();
  const ScheduledSeq* r2 = find(o, 2);
  ASSERT_NE(r2, nullptr);
  EXPECT_EQ(r2->start, 8);
  EXPECT_EQ(r2->num_tokens, 2);
  EXPECT_EQ(s.find(2)->num_cached_tokens, 8);
}

TEST(Scheduler, HeadOfQueueWaitsForBlocksNobodyOvertakes) {
  KvCacheManager kv(3, 4, false);
  Scheduler s({4, 64}, &kv);
  s.add(1, prompt(7, 100));
  run_step(s, s.schedule());
  s.add(2, prompt(8, 200));  // needs 2 blocks, 1 free
  s.add(3, prompt(2, 300));  // would fit, but must not overtake 2
  auto o = s.schedule();
  EXPECT_EQ(find(o, 2), nullptr);
  EXPECT_EQ(find(o, 3), nullptr);
  EXPECT_EQ(s.num_waiting(), 2);
  EXPECT_EQ(kv.num_free_blocks(), 1);
}

// A request's cache salt holds for admission and block publication: its blocks are found again
// under its own salt only (a preempted request is re-admitted through the same path).
TEST(Scheduler, CacheSaltSeparatesPrefixes) {
  KvCacheManager kv(8, 4);
  Scheduler s({4, 64}, &kv);
  s.add(1, prompt(9, 100), true, 0, /*cache_salt=*/5);
  run_step(s, s.schedule());
  s.add(2, prompt(9, 100), true, 0, /*cache_salt=*/6);
  s.add(3, prompt(9, 100), true, 0, /*cache_salt=*/5);
  auto o = s.schedule();
  EXPECT_EQ(s.find(2)->num_cached_tokens, 0);
  EXPECT_EQ(s.find(3)->num_cached_tokens, 8);
  EXPECT_EQ(s.find(3)->cache_salt, 5u);
  run_step(s, o);
  s.finish(1);
  s.finish(3);
  // Salt 6 now finds request 2's blocks, not salt 5's.
  s.add(4, prompt(9, 100), true, 0, 6);
  auto o2 = s.schedule();
  EXPECT_EQ(s.find(4)->num_cached_tokens, 8);  // request 2's published blocks
  EXPECT_EQ(kv.block_table(4)[0], kv.block_table(2)[0]);
}

TEST(Scheduler, SpeculationReservesDraftSlotsAndCommitsOnlyKeptTokens) {
  KvCacheManager kv(16, 4);
  Scheduler s({/*max_num_seqs=*/4, /*max_batched_tokens=*/32}, &kv);
  s.add(1, prompt(6, 100));
  s.set_speculation(1, 3);  // ignored while prefilling
  auto o1 = s.schedule();
  EXPECT_EQ(o1.seqs[0].num_tokens, 6);
  EXPECT_EQ(o1.seqs[0].num_spec, 0);
  run_step(s, o1);  // 6 computed, 7 tokens
  auto o2 = s.schedule();
  ASSERT_EQ(o2.seqs.size(), 1u);
  EXPECT_EQ(o2.seqs[0].start, 6);
  EXPECT_EQ(o2.seqs[0].num_tokens, 4);  // the new token + 3 draft slots
  EXPECT_EQ(o2.seqs[0].num_spec, 3);
  EXPECT_TRUE(o2.seqs[0].sample);
  EXPECT_EQ(o2.seqs[0].block_table.size(), 3u);  // 10 positions
  EXPECT_EQ(kv.num_free_blocks(), 13);
  s.complete_step(o2);
  EXPECT_EQ(s.find(1)->num_computed_tokens, 7);  // draft slots are not computed tokens
  // Verification kept 1 draft token (8) and replaced the next with 9.
  s.append_token(1, 8);
  s.append_token(1, 9);
  s.commit_speculation(1, 1);
  EXPECT_EQ(s.find(1)->num_computed_tokens, 8);
  EXPECT_EQ(s.find(1)->tokens.size(), 9u);
  EXPECT_EQ(kv.block_table(1).size(), 2u);  // the rejected slots' block went back
  EXPECT_EQ(kv.num_free_blocks(), 14);
  auto o3 = s.schedule();
  EXPECT_EQ(o3.seqs[0].start, 8);
  EXPECT_EQ(o3.seqs[0].num_tokens, 4);
}

TEST(Scheduler, SpeculationPublishesOnlyVerifiedBlocks) {
  KvCacheManager kv(16, 4);
  Scheduler s({4, 32}, &kv);
  s.add(1, prompt(3, 100));
  run_step(s, s.schedule());  // 3 computed, 4 tokens
  s.set_speculation(1, 4);
  auto o = s.schedule();
  EXPECT_EQ(o.seqs[0].num_tokens, 5);  // positions 3..7: two blocks
  s.complete_step(o);
  EXPECT_EQ(kv.stats().cached_blocks, 1);  // block 0 (positions 0-3) verified
  // All four draft tokens rejected: the replacement token is the only new one.
  s.append_token(1, 42);
  s.commit_speculation(1, 0);
  EXPECT_EQ(s.find(1)->num_computed_tokens, 4);
  EXPECT_EQ(kv.block_table(1).size(), 1u);
  EXPECT_EQ(kv.stats().cached_blocks, 1);
  // A second request with the same five tokens reuses block 0 only.
  s.add(2, {100, 101, 102, 7, 42});
  auto o2 = s.schedule();
  EXPECT_EQ(s.find(2)->num_cached_tokens, 4);
}

TEST(Scheduler, SpeculationStaysWithinTheBudgetAndNeverPreempts) {
  KvCacheManager kv(4, 4);  // 16 slots
  Scheduler s({4, 32}, &kv);
  s.add(1, prompt(7, 100));
  s.add(2, prompt(7, 200));
  run_step(s, s.schedule());  // both 7 computed + 1 token: 4 blocks used, none free
  s.set_speculation(1, 4);
  s.set_speculation(2, 4);
  auto o = s.schedule();
  ASSERT_EQ(o.seqs.size(), 2u);
  EXPECT_TRUE(o.preempted.empty());
  EXPECT_EQ(o.seqs[0].num_spec, 0);  // no free block for positions 8..11: plain decode
  EXPECT_EQ(o.seqs[1].num_spec, 0);
  // Budget: 3 rows for one decoding request -> 2 draft tokens.
  KvCacheManager kv2(16, 4);
  Scheduler t({4, 3}, &kv2);
  t.add(1, prompt(2, 100));
  run_step(t, t.schedule());
  t.set_speculation(1, 4);
  auto o2 = t.schedule();
  EXPECT_EQ(o2.seqs[0].num_tokens, 3);
  EXPECT_EQ(o2.seqs[0].num_spec, 2);
}

}  // namespace
}  // namespace ktl
