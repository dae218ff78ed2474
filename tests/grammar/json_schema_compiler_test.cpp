#include "core/grammar/json_schema_compiler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "core/grammar/compiled_grammar.h"
#include "core/grammar/grammar_error.h"
#include "core/grammar/grammar_matcher.h"
#include "tests/grammar/grammar_test_support.h"
#include "tests/grammar/schema_suite.h"

namespace ktl::grammar {
namespace {

using nlohmann::json;

bool valid(const json& schema_doc, const json& doc, std::string* why) {
  valijson::Schema schema;
  valijson::SchemaParser parser;
  valijson::adapters::NlohmannJsonAdapter schema_adapter(schema_doc);
  parser.populateSchema(schema_adapter, schema);
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(doc);
  if (validator.validate(schema, target, &results)) return true;
  valijson::ValidationResults::Error e;
  while (results.popError(e)) *why += e.description + "; ";
  return false;
}

TEST(JsonSchemaCompiler, RandomGenerationsParseAndValidate) {
  auto vocab = testing::synthetic_vocab();
  std::mt19937_64 rng(1234);
  int completed = 0;
  for (const char* text : testing::kSchemas) {
    SCOPED_TRACE(text);
    const std::string gbnf = json_schema_to_gbnf(text);
    std::shared_ptr<const CompiledGrammar> g;
    ASSERT_NO_THROW(g = CompiledGrammar::compile(gbnf, vocab)) << gbnf;
    const json schema_doc = json::parse(text);
    for (int run = 0; run < 5; ++run) {
      GrammarMatcher m(g);
      const auto gen = testing::random_generation(m, rng);
      ASSERT_TRUE(gen.completed) << "did not complete: " << gen.text;
      json doc;
      ASSERT_NO_THROW(doc = json::parse(gen.text)) << gen.text;
      std::string why;
      EXPECT_TRUE(valid(schema_doc, doc, &why)) << gen.text << "\n" << why;
      ++completed;
    }
  }
  EXPECT_GE(completed, 150);
}

TEST(JsonSchemaCompiler, PropertiesKeepSchemaOrderAndRequiredness) {
  auto vocab = testing::synthetic_vocab();
  auto g = CompiledGrammar::compile(json_schema_to_gbnf(testing::kSchemas[32]), vocab);
  auto accepts = [&](const std::string& s) {
    GrammarMatcher m(g);
    return m.accept_bytes(s) && m.is_complete();
  };
  EXPECT_TRUE(accepts(R"({"r1": true, "r2": "가"})"));
  EXPECT_TRUE(accepts(R"( {"o1":1,"r1":false,"o2":null,"r2":"나","o3":"z"})"));
  EXPECT_FALSE(accepts(R"({"r2": "가", "r1": true})"));  // out of order
  EXPECT_FALSE(accepts(R"({"r1": true})"));              // r2 missing
  EXPECT_FALSE(accepts(R"({"r1": true, "r2": "가", "x": 1})"));
  EXPECT_FALSE(accepts(R"({"r1":true,,"r2":"가"})"));
}

TEST(JsonSchemaCompiler, WhitespaceIsBounded) {
  auto g = CompiledGrammar::compile(json_object_gbnf(), testing::synthetic_vocab());
  GrammarMatcher m(g);
  EXPECT_TRUE(m.accept_bytes(" {\n"));
  EXPECT_TRUE(m.accept_bytes(std::string(20, ' ')));
  EXPECT_FALSE(m.accept_bytes(" "));
  EXPECT_FALSE(m.accept_bytes("\n"));
  EXPECT_TRUE(m.accept_bytes("}"));
  EXPECT_TRUE(m.is_complete());
  GrammarMatcher two(g);
  EXPECT_FALSE(two.accept_bytes("  {}"));  // one leading space at most
}

TEST(JsonSchemaCompiler, ExtraKeysNeverRepeatListedOnes) {
  auto g = CompiledGrammar::compile(json_schema_to_gbnf(testing::kSchemas[28]),
                                    testing::synthetic_vocab());
  auto accepts = [&](const std::string& s) {
    GrammarMatcher m(g);
    return m.accept_bytes(s) && m.is_complete();
  };
  EXPECT_TRUE(accepts(R"({"x": true, "y": 3})"));
  EXPECT_TRUE(accepts(R"({"xx": 3, "": 1})"));
  EXPECT_FALSE(accepts(R"({"x": true, "x": 3})"));
  EXPECT_FALSE(accepts(R"({"y": 10})"));
}

TEST(JsonSchemaCompiler, UnsupportedKeywordsAreNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type":"object","patternProperties":{"a":{}}})", "patternProperties"},
      {R"({"type":"array","uniqueItems":true})", "uniqueItems"},
      {R"({"type":"array","contains":{}})", "contains"},
      {R"({"prefixItems":[{}]})", "prefixItems"},
      {R"({"not":{"type":"null"}})", "not"},
      {R"({"type":"integer","multipleOf":3})", "multipleOf"},
      {R"({"type":"object","minProperties":1})", "minProperties"},
      {R"({"if":{},"then":{}})", "if"},
      {R"({"type":"string","format":"ipv4"})", "format"},
      {R"({"type":"string","pattern":"^(?=a)b$"})", "pattern"},
      {R"({"type":"string","pattern":"abc"})", "pattern"},
      {R"({"allOf":[{"type":"string"},{"maxLength":3}]})", "allOf"},
      {R"({"type":"array","items":[{"type":"string"}]})", "items"},
      {R"({"$ref":"http://example.com/s.json"})", "$ref"},
      {R"({"$ref":"#/$defs/missing"})", "$ref"},
      {R"({"type":"number","minimum":0.5})", "minimum"},
      {R"({"type":"object","properties":{},"required":["a"]})", "required"},
      {R"({"type":"strin"})", "type"},
      {R"({"type":"object","properties":{"a":{"type":"string","minContains":1}}})", "minContains"},
      {R"(false)", "false"},
  };
  for (const auto& [schema, keyword] : cases) {
    try {
      json_schema_to_gbnf(schema);
      ADD_FAILURE() << "accepted: " << schema;
    } catch (const GrammarError& e) {
      EXPECT_EQ(e.keyword, keyword) << schema << ": " << e.what();
    }
  }
  EXPECT_THROW(json_schema_to_gbnf("{not json"), GrammarError);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Each either fails with GrammarError or compiles (schema -> GBNF -> matcher) within bounds.
void error_or_fast(const std::string& schema, double max_seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    auto g = CompiledGrammar::compile(json_schema_to_gbnf(schema), testing::synthetic_vocab());
    GrammarMatcher m(g);
    (void)m.allowed_mask();
  } catch (const GrammarError&) {
  }
  EXPECT_LT(seconds_since(t0), max_seconds) << schema.substr(0, 80);
}

TEST(JsonSchemaCompiler, HostileSchemasFailFastOrCompileInBounds) {
  // $ref cycles with no base case.
  EXPECT_THROW(
      CompiledGrammar::compile(
          json_schema_to_gbnf(
              R"({"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})"),
          testing::synthetic_vocab()),
      GrammarError);
  EXPECT_THROW(CompiledGrammar::compile(
                   json_schema_to_gbnf(
                       R"({"type":"object","properties":{"x":{"$ref":"#"}},"required":["x"]})"),
                   testing::synthetic_vocab()),
               GrammarError);
  // 10,000 enum values.
  json e = json::array();
  for (int i = 0; i < 10000; ++i) e.push_back("value-" + std::to_string(i * 7919 % 100003));
  error_or_fast(json{{"enum", e}}.dump(), 5.0);
  // Nesting depth 10,000.
  std::string deep;
  for (int i = 0; i < 10000; ++i) deep += R"({"type":"array","items":)";
  deep += "{}";
  deep += std::string(10000, '}');
  error_or_fast(deep, 5.0);
  EXPECT_THROW(json_schema_to_gbnf(deep), GrammarError);
  // A 1 MB schema: many properties (just over the limit, and just under it).
  json props = json::object();
  for (size_t i = 0, bytes = 0; bytes < (1 << 20); ++i) {
    const std::string key = "p" + std::to_string(i);
    props[key] = {{"type", "integer"}};
    bytes += key.size() + 22;  // "key":{"type":"integer"},
  }
  const std::string big = json{{"type", "object"}, {"properties", props}}.dump();
  EXPECT_THROW(json_schema_to_gbnf(big), GrammarError);
  JsonSchemaOptions roomy;
  roomy.max_schema_bytes = 2 << 20;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    json_schema_to_gbnf(big, roomy);
  } catch (const GrammarError&) {
  }
  EXPECT_LT(seconds_since(t0), 5.0);
  // Huge counts.
  error_or_fast(R"({"type":"array","maxItems":10000,"items":{"type":"string","maxLength":10000}})",
                5.0);
}

}  // namespace
}  // namespace ktl::grammar
