#include "core/grammar/grammar_matcher.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "core/grammar/compiled_grammar.h"
#include "core/grammar/json_schema_compiler.h"
#include "tests/grammar/grammar_test_support.h"

namespace ktl::grammar {
namespace {

using testing::allowed_tokens;
using testing::synthetic_vocab;

int token_of(const TokenVocab& v, const std::string& bytes) {
  for (int i = 0; i < v.size(); ++i) {
    if (v.token_bytes(i) == bytes && v.maskable(i)) return i;
  }
  return -1;
}

TEST(TokenVocab, TrieHoldsEveryMaskableTokenOnce) {
  auto v = synthetic_vocab();
  EXPECT_EQ(v->token_list().size(), static_cast<size_t>(v->size() - 4));  // 1 empty, 3 special
  for (int node = 1; node < v->trie_nodes(); ++node) {
    for (int k = v->tokens_begin(node); k < v->tokens_begin(node + 1); ++k) {
      EXPECT_EQ(static_cast<int>(v->token_bytes(v->token_list()[k]).size()), v->depth(node));
    }
  }
}

TEST(GrammarMatcher, SplitUtf8AcrossTokensIsExact) {
  auto v = synthetic_vocab();
  auto g = CompiledGrammar::compile("root ::= \"안녕\" [가-힣]*", v);
  GrammarMatcher m(g);
  // 안 = EC 95 88: the two-byte piece, then the single byte 0x88.
  EXPECT_TRUE(m.accept_token(token_of(*v, "\xEC\x95")));
  EXPECT_FALSE(m.is_complete());
  EXPECT_FALSE(m.accepts_token(token_of(*v, "\xEC")));  // not a continuation byte
  EXPECT_FALSE(m.accepts_token(token_of(*v, "안녕")));
  EXPECT_TRUE(m.accept_token(0x88));
  EXPECT_TRUE(m.accept_token(token_of(*v, "녕")));
  EXPECT_TRUE(m.is_complete());
  EXPECT_FALSE(m.is_terminated());
  // Only bytes that start a Hangul syllable (EA-ED) or whole syllables may follow.
  for (int t : allowed_tokens(m)) {
    const auto& b = v->token_bytes(t);
    const auto c0 = static_cast<uint8_t>(b[0]);
    EXPECT_TRUE(c0 >= 0xEA && c0 <= 0xED) << t;
  }
  EXPECT_FALSE(m.accept_token(token_of(*v, "abc")));
}

TEST(GrammarMatcher, InvalidUtf8IsNeverAccepted) {
  auto v = synthetic_vocab();
  auto g = CompiledGrammar::compile("root ::= .*", v);
  GrammarMatcher m(g);
  EXPECT_FALSE(m.accepts_token(0x80));  // lone continuation byte
  EXPECT_FALSE(m.accepts_token(0xC0));  // overlong lead
  EXPECT_FALSE(m.accepts_token(0xFF));
  EXPECT_TRUE(m.accept_token(0xED));
  EXPECT_FALSE(m.accepts_token(0xA0));  // would be a surrogate
  EXPECT_TRUE(m.accept_token(0x9F));
  EXPECT_FALSE(m.is_complete());
}

TEST(GrammarMatcher, SpecialAndEmptyTokensAreNeverAllowed) {
  std::vector<bool> special;
  auto v = synthetic_vocab(&special);
  auto g = CompiledGrammar::compile("root ::= [^x]*", v);
  GrammarMatcher m(g);
  for (int t : allowed_tokens(m)) {
    EXPECT_FALSE(special[t]);
    EXPECT_FALSE(v->token_bytes(t).empty());
  }
  EXPECT_FALSE(m.accepts_token(v->size() - 1));
  EXPECT_FALSE(m.accept_token(-1));
  EXPECT_FALSE(m.accept_token(v->size()));
}

TEST(GrammarMatcher, TerminatedWhenNothingCanFollow) {
  auto g = CompiledGrammar::compile("root ::= \"ok\" \"!\"?", synthetic_vocab());
  GrammarMatcher m(g);
  EXPECT_TRUE(m.accept_bytes("ok"));
  EXPECT_TRUE(m.is_complete());
  EXPECT_FALSE(m.is_terminated());
  EXPECT_TRUE(m.accept_bytes("!"));
  EXPECT_TRUE(m.is_terminated());
  EXPECT_TRUE(allowed_tokens(m).empty());
  EXPECT_FALSE(m.accept_bytes("!"));
  m.reset();
  EXPECT_FALSE(m.is_complete());
}

// The fast mask (trie DFS, caches) against its naive twin: accepts_token for every token, on
// many random states of several grammars; and accept_token agrees with accepts_token.
TEST(GrammarMatcher, MaskEqualsBruteForceOnRandomStates) {
  auto v = synthetic_vocab();
  const std::vector<std::string> grammars = {
      json_object_gbnf(),
      json_schema_to_gbnf(R"({"type":"object","properties":{"이름":{"type":"string"},
        "tags":{"type":"array","items":{"enum":["빨강","파랑","red"]}},
        "n":{"type":"integer","minimum":-20,"maximum":300}},"required":["이름"]})"),
      "root ::= (\"안녕\" | [a-z]+ | \" 하세요\") (\" \" [0-9]{1,3})*",
  };
  std::mt19937_64 rng(7);
  int states = 0;
  for (const auto& gbnf : grammars) {
    auto g = CompiledGrammar::compile(gbnf, v);
    for (int run = 0; run < 12; ++run) {
      GrammarMatcher m(g);
      std::string text;
      for (int step = 0; step < 40; ++step) {
        const std::vector<int> fast = allowed_tokens(m);
        std::vector<int> naive;
        for (int t = 0; t < v->size(); ++t) {
          if (m.accepts_token(t)) naive.push_back(t);
        }
        ASSERT_EQ(fast, naive) << "grammar " << gbnf.substr(0, 40) << " step " << step;
        ++states;
        if (fast.empty()) break;
        const int pick = fast[rng() % fast.size()];
        ASSERT_TRUE(m.accept_token(pick));
        // accepts_token must not change the state: a mask right after equals one recomputed.
        const int other = static_cast<int>(rng() % v->size());
        (void)m.accepts_token(other);
        GrammarMatcher twin(g);  // a fresh matcher replaying the text has the same mask
        ASSERT_TRUE(twin.accept_bytes(text += v->token_bytes(pick)));
        ASSERT_EQ(allowed_tokens(twin), allowed_tokens(m));
      }
    }
  }
  EXPECT_GT(states, 300);
}

TEST(GrammarMatcher, SharedMaskCacheServesOtherMatchers) {
  auto v = synthetic_vocab();
  auto g = CompiledGrammar::compile(json_object_gbnf(), v);
  GrammarMatcher a(g), b(g);
  const auto ma = allowed_tokens(a);
  const size_t cached = g->mask_cache_size();
  EXPECT_GE(cached, 1u);
  EXPECT_EQ(allowed_tokens(b), ma);
  EXPECT_EQ(g->mask_cache_size(), cached);  // b hit the shared entry
}

}  // namespace
}  // namespace ktl::grammar
