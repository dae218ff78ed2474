#include "core/grammar/gbnf_parser.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "core/grammar/compiled_grammar.h"
#include "core/grammar/grammar_error.h"
#include "core/grammar/grammar_matcher.h"
#include "tests/grammar/grammar_test_support.h"

namespace ktl::grammar {
namespace {

bool matches(const std::string& gbnf, const std::string& text) {
  auto g = CompiledGrammar::compile(gbnf, testing::synthetic_vocab());
  GrammarMatcher m(g);
  return m.accept_bytes(text) && m.is_complete();
}

std::string error_of(const std::string& gbnf, const GrammarLimits& limits = {}) {
  try {
    parse_gbnf(gbnf, limits);
  } catch (const GrammarError& e) {
    return e.what();
  }
  return "";
}

TEST(GbnfParser, LiteralsClassesAndRepetition) {
  const std::string g = R"(# a comment
root ::= greeting " " name{1,3} "!"?   # trailing comment
greeting ::= "hi" | "안녕"
name ::= [A-Z] [a-z]*
)";
  EXPECT_TRUE(matches(g, "hi Bob"));
  EXPECT_TRUE(matches(g, "안녕 BobAnnC!"));
  EXPECT_FALSE(matches(g, "hi "));
  EXPECT_FALSE(matches(g, "hi BobAnnCatDan"));
  EXPECT_FALSE(matches(g, "hello Bob"));
}

TEST(GbnfParser, EscapesAndNegatedUnicodeClasses) {
  EXPECT_TRUE(
      matches(R"(root ::= "a\n\t\\\"\x41\u00e9\U0001F600")", "a\n\t\\\"A\xC3\xA9\xF0\x9F\x98\x80"));
  const std::string str = R"(root ::= "\"" [^"\\]* "\"")";
  EXPECT_TRUE(matches(str, "\"가나 abc é\""));
  EXPECT_FALSE(matches(str, "\"a\"b\""));
  EXPECT_TRUE(matches("root ::= [가-힣]+", "한국어"));
  EXPECT_FALSE(matches("root ::= [가-힣]+", "abc"));
  EXPECT_TRUE(matches("root ::= .{3}", "a가\xF0\x9F\x98\x80"));
  EXPECT_FALSE(matches("root ::= .{3}", "ab"));
}

TEST(GbnfParser, GroupsAlternativesAcrossLinesAndCounts) {
  const std::string g = R"(root ::= (
    "a" | "b"
  ){2,} x
  | "c"
x ::= [0-9]{2} | [0-9]{4,4}
)";
  EXPECT_TRUE(matches(g, "ab12"));
  EXPECT_TRUE(matches(g, "aba1234"));
  EXPECT_TRUE(matches(g, "c"));
  EXPECT_FALSE(matches(g, "a12"));
  EXPECT_FALSE(matches(g, "ab123"));
}

TEST(GbnfParser, RepeatedEmptyLiteralIsEmpty) {  // found by grammar_fuzz
  EXPECT_TRUE(matches("root ::= \"\"? \"a\" \"\"* \"\"{2,3}", "a"));
}

TEST(GbnfParser, ErrorsNameLineAndColumn) {
  EXPECT_NE(error_of("root ::= foo\n").find("undefined rule 'foo'"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\nx ::= \"b\" y\n").find("line 2, column 11"),
            std::string::npos);
  EXPECT_NE(error_of("a ::= \"x\"\n").find("no 'root'"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"abc\n").find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"\\q\"").find("unknown escape"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{3,2}").find("n < m"), std::string::npos);
  EXPECT_NE(error_of("root ::= [b-a]").find("reversed"), std::string::npos);
  EXPECT_NE(error_of("root ::= [^\\x00-\\U0010FFFF]").find("matches nothing"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
  EXPECT_NE(error_of("root ::= * \"a\"").find("without a symbol"), std::string::npos);
  EXPECT_NE(error_of("root = \"a\"").find("'::='"), std::string::npos);
  EXPECT_NE(error_of("root ::= (\"a\"").find("expected ')'"), std::string::npos);
}

TEST(GbnfParser, LeftRecursionAndEndlessRulesAreRejected) {
  EXPECT_NE(error_of("root ::= root \"a\" | \"b\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= x \"a\"\nx ::= y? root\ny ::= \"b\"").find("left-recursive"),
            std::string::npos);
  try {
    parse_gbnf("root ::= \"a\" root");
    FAIL();
  } catch (const GrammarError& e) {
    EXPECT_NE(std::string(e.what()).find("no finite sentence"), std::string::npos);
  }
  // An endless alternative is pruned: only "b" remains.
  EXPECT_TRUE(matches("root ::= \"a\" loop | \"b\"\nloop ::= \"x\" loop", "b"));
  EXPECT_FALSE(matches("root ::= \"a\" loop | \"b\"\nloop ::= \"x\" loop", "ax"));
}

TEST(GbnfParser, LimitsHoldAgainstHostileGrammars) {
  GrammarLimits small;
  small.max_grammar_bytes = 100;
  EXPECT_NE(error_of(std::string(200, ' ') + "root ::= \"a\"", small).find("over the limit"),
            std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{10001}").find("repetition count"), std::string::npos);
  EXPECT_NE(error_of("root ::= " + std::string(1000, '(') + "\"a\"" + std::string(1000, ')'))
                .find("nested too deeply"),
            std::string::npos);
  small = GrammarLimits{};
  small.max_rules = 100;
  EXPECT_NE(error_of("root ::= (\"a\"{0,200})", small).find("rules"), std::string::npos);
  // Nested repetition multiplies: bounded by max_elements / max_rules, fails fast.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(error_of("root ::= ((((\"ab\"{0,10000}){0,10000}){0,10000}){0,10000})").empty());
  // Ambiguity that doubles the stacks per level: the start state is over max_stacks.
  std::string amb = "root ::= r0\n";
  for (int i = 0; i < 40; ++i) {
    amb += "r" + std::to_string(i) + " ::= r" + std::to_string(i + 1) + " \"x\" | r" +
           std::to_string(i + 1) + " \"y\"\n";
  }
  amb += "r40 ::= \"z\"\n";
  EXPECT_THROW(CompiledGrammar::compile(amb, testing::synthetic_vocab()), GrammarError);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 5.0);
}

}  // namespace
}  // namespace ktl::grammar
