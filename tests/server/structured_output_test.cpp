// The grammar a request generates under: response_format, the raw grammar, and tool calls, each
// compiled and walked over a small vocabulary of single bytes.
#include "server/structured_output.h"

#include <gtest/gtest.h>

#include "core/grammar/compiled_grammar.h"
#include "core/grammar/grammar_matcher.h"
#include "server/api_error.h"

namespace ktl::server {
namespace {

CompletionRequest parse(const std::string& body, bool chat = true) {
  return parse_completion_request(body, chat, ProtocolLimits{});
}

// Bytes 0..255 as tokens; </s> (3) special.
std::shared_ptr<const grammar::TokenVocab> byte_vocab() {
  std::vector<std::string> b(256);
  std::vector<bool> special(256, false);
  for (int i = 0; i < 256; ++i) b[i] = std::string(1, static_cast<char>(i));
  special[3] = true;
  return std::make_shared<const grammar::TokenVocab>(std::move(b), std::move(special));
}

bool accepts(const std::string& gbnf, const std::string& text) {
  grammar::GrammarMatcher m(grammar::CompiledGrammar::compile(gbnf, byte_vocab()));
  for (unsigned char c : text)
    if (!m.accept_token(c)) return false;
  return m.is_complete();
}

const char* kTool = R"("tools":[{"type":"function","function":{"name":"get_weather",
  "parameters":{"type":"object","properties":{"city":{"enum":["서울","부산"]}},"required":["city"],
  "additionalProperties":false}}},{"type":"function","function":{"name":"noop"}}])";

TEST(StructuredOutput, ToolChoicesBecomeGrammarsOfOneCall) {
  const std::string call =
      " <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"부산\"}}\n</tool_call>";
  const std::string base = R"({"messages":[{"role":"user","content":"x"}],)" + std::string(kTool);
  const std::string required = request_gbnf(parse(base + R"(,"tool_choice":"required"})"));
  EXPECT_TRUE(accepts(required, call));
  EXPECT_FALSE(accepts(required, "맑음"));
  EXPECT_FALSE(accepts(required,
                       " <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                       "\"대구\"}}\n</tool_call>"));
  EXPECT_TRUE(
      accepts(required, "<tool_call>\n{\"name\": \"noop\", \"arguments\": {}}\n</tool_call>"));
  const std::string named = request_gbnf(
      parse(base + R"(,"tool_choice":{"type":"function","function":{"name":"noop"}}})"));
  EXPECT_FALSE(accepts(named, call));
  const std::string automatic = request_gbnf(parse(base + "}"));
  EXPECT_TRUE(accepts(automatic, call));
  EXPECT_TRUE(accepts(automatic, " 오늘은 맑아요"));
  EXPECT_TRUE(accepts(automatic, ""));
  EXPECT_FALSE(accepts(automatic, "<tool_call>\n{\"name\": \"nope\""));
  EXPECT_EQ(request_gbnf(parse(base + R"(,"tool_choice":"none"})")), "");
}

TEST(StructuredOutput, ResponseFormatsAndRawGrammars) {
  const std::string schema = request_gbnf(parse(
      R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema",
          "json_schema":{"name":"n","schema":{"type":"object","properties":{"이름":{"type":"string"}},
          "required":["이름"],"additionalProperties":false}}}})"));
  EXPECT_TRUE(accepts(schema, R"( {"이름": "홍길동"})"));
  EXPECT_FALSE(accepts(schema, R"({"name": "x"})"));
  const std::string obj =
      request_gbnf(parse(R"({"prompt":"x","response_format":{"type":"json_object"}})", false));
  EXPECT_TRUE(accepts(obj, R"({"a": [1, true, null]})"));
  EXPECT_FALSE(accepts(obj, "[1]"));
  // Chat allows the reply's leading space before a raw grammar; completions see the text as is.
  const char* raw = R"("grammar":"root ::= \"예\" | \"아니요\"")";
  EXPECT_TRUE(accepts(request_gbnf(parse(R"({"messages":[{"role":"user","content":"x"}],)" +
                                         std::string(raw) + "}")),
                      " 예"));
  EXPECT_FALSE(
      accepts(request_gbnf(parse(R"({"prompt":"x",)" + std::string(raw) + "}", false)), " 예"));
  EXPECT_EQ(request_gbnf(parse(R"({"prompt":"x"})", false)), "");
  try {
    request_gbnf(parse(
        R"({"prompt":"x","response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object","patternProperties":{}}}}})",
        false));
    FAIL() << "an unsupported keyword must be refused";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find("patternProperties"), std::string::npos) << e.what();
  }
}

// Properties come in the order the client wrote them (the body is not re-sorted on parsing).
TEST(StructuredOutput, PropertiesKeepTheClientsOrder) {
  const std::string g = request_gbnf(parse(
      R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema",
          "json_schema":{"name":"n","schema":{"type":"object","properties":{"title":{"type":"string"},
          "rating":{"type":"integer"}},"required":["title","rating"],"additionalProperties":false}}}})"));
  EXPECT_TRUE(accepts(g, R"({"title": "명작", "rating": 9})"));
  EXPECT_FALSE(accepts(g, R"({"rating": 9, "title": "명작"})"));
}

TEST(StructuredOutput, RenamesRulesOutsideLiteralsClassesAndComments) {
  EXPECT_EQ(rename_gbnf_rule("root ::= \"root\" [root] root-x x-root root # root\n", "root", "r2"),
            "r2 ::= \"root\" [root] root-x x-root r2 # root\n");
}

}  // namespace
}  // namespace ktl::server
