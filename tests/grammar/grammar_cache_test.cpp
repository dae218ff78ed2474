#include "core/grammar/grammar_cache.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "core/grammar/grammar_error.h"
#include "tests/grammar/grammar_test_support.h"

namespace ktl::grammar {
namespace {

TEST(GrammarCache, CountsHitsAndMissesAndEvictsLeastRecentlyUsed) {
  auto vocab = testing::synthetic_vocab();
  GrammarCache cache(2);
  int compiles = 0;
  auto get = [&](const std::string& lit) {
    return cache.get_or_compile(lit, [&] {
      ++compiles;
      return CompiledGrammar::compile("root ::= \"" + lit + "\"", vocab);
    });
  };
  auto a = get("a");
  EXPECT_EQ(get("a"), a);
  get("b");
  get("a");  // a is now the most recent
  get("c");  // evicts b
  EXPECT_EQ(cache.size(), 2u);
  get("a");
  EXPECT_EQ(compiles, 3);
  get("b");  // compiled again
  EXPECT_EQ(compiles, 4);
  EXPECT_EQ(cache.hits(), 3u);
  EXPECT_EQ(cache.misses(), 4u);
}

TEST(GrammarCache, FailedCompileStoresNothingAndThreadsShareEntries) {
  auto vocab = testing::synthetic_vocab();
  GrammarCache cache;
  EXPECT_THROW(
      cache.get_or_compile("bad", [&] { return CompiledGrammar::compile("root ::= nope", vocab); }),
      GrammarError);
  EXPECT_EQ(cache.size(), 0u);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto g = cache.get_or_compile("k" + std::to_string(i % 5), [&] {
          return CompiledGrammar::compile("root ::= \"x\"", vocab);
        });
        ASSERT_TRUE(g);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(cache.size(), 5u);
  EXPECT_EQ(cache.hits() + cache.misses(), 201u);
}

}  // namespace
}  // namespace ktl::grammar
