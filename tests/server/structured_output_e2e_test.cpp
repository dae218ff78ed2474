// The OpenAI dialect end to end against a real `ktl serve` on a tiny random-init model:
//  - lm-evaluation-harness's request shapes (batched token-id prompts, echo, logprobs 1,
//    max_tokens 0) against an in-process forward of the same ids (fp32, 1e-4 nats);
//  - structured output: 32 JSON schemas x 5 samples at temperature 1.0, each reply parsed and
//    validated by an independent validator (valijson); the grammar, not the model, is what
//    makes them valid; unsupported keywords and hostile schemas answer 400 without stalling.
#include <gtest/gtest.h>
#include <httplib.h>
#include <torch/torch.h>

#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "core/model/checkpoint.h"
#include "core/task_eval/likelihood_scorer.h"
#include "tests/support/server_test_util.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using ktl::testing::ServerProcess;

class StructuredE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(fs::temp_directory_path() / ("ktl_so_test_" + std::to_string(getpid())));
    fs::remove_all(*dir_);
    std::string why;
    model_ = new std::string(ktl::testing::make_tiny_served_model(*dir_ + "/m", &why));
    if (model_->empty()) {
      skip_ = new std::string(why);
      return;
    }
    server_ = new ServerProcess({"--model", *model_, "--data-dir", *dir_ + "/data", "--kv-cache-mb",
                                 "64", "--max-streams", "32"},
                                *dir_ + "/server.log");
    ASSERT_TRUE(server_->wait_healthy()) << server_->log();
  }
  static void TearDownTestSuite() {
    if (server_) EXPECT_EQ(server_->stop(), 0);
    delete server_;
    server_ = nullptr;
    if (dir_) fs::remove_all(*dir_);
  }
  void SetUp() override {
    if (skip_) GTEST_SKIP() << *skip_;
  }
  static httplib::Result post(const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(120, 0);
    return c.Post(path.c_str(), body.dump(), "application/json");
  }

  static inline std::string* dir_ = nullptr;
  static inline std::string* model_ = nullptr;
  static inline std::string* skip_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

TEST_F(StructuredE2E, EvalHarnessShapesEqualAnInProcessForward) {
  ktl::LoadedCheckpoint ck = ktl::load_checkpoint(*model_);
  ck.model->eval();
  // Context + continuation as token ids, batched, as lm-evaluation-harness sends them.
  std::vector<std::vector<int>> prompts;
  for (const char* text :
       {"나는 학교에서 책을 읽었다.", "고양이가 공원에서 노래를 불렀습니다.", "우리는 카페에서"}) {
    auto r = post("/v1/tokenize", {{"prompt", text}});
    ASSERT_EQ(r->status, 200);
    prompts.push_back(json::parse(r->body)["tokens"].get<std::vector<int>>());
  }
  auto r = post("/v1/completions", {{"prompt", prompts},
                                    {"echo", true},
                                    {"logprobs", 1},
                                    {"max_tokens", 0},
                                    {"temperature", 0}});
  ASSERT_EQ(r->status, 200) << r->body;
  const json out = json::parse(r->body);
  ASSERT_EQ(out["choices"].size(), prompts.size());
  for (const auto& c : out["choices"]) {
    const auto& ids = prompts[c["index"].get<int>()];
    const auto& lps = c["logprobs"]["token_logprobs"];
    ASSERT_EQ(lps.size(), ids.size());
    EXPECT_TRUE(lps[0].is_null());
    torch::Tensor ref;
    {
      torch::NoGradGuard ng;
      std::vector<int64_t> v(ids.begin(), ids.end());
      ref = torch::log_softmax(ck.model->forward(torch::tensor(v).unsqueeze(0)).squeeze(0), -1);
    }
    double sum = 0, ref_sum = 0;  // the continuation: the last 3 tokens
    for (size_t i = 1; i < ids.size(); ++i) {
      const double want = ref[static_cast<int64_t>(i - 1)][ids[i]].item<double>();
      EXPECT_NEAR(lps[i].get<double>(), want, 1e-4) << i;
      if (i + 3 >= ids.size()) {
        sum += lps[i].get<double>();
        ref_sum += want;
      }
    }
    EXPECT_NEAR(sum, ref_sum, 1e-4);
  }
  EXPECT_EQ(out["usage"]["completion_tokens"], 0);
}

// 32 schemas: nested objects and arrays, enums, const, anyOf, bounds, lengths, patterns,
// formats, $ref recursion, additionalProperties, Hangul keys and values.
std::vector<json> schema_suite() {
  const char* texts[] = {
      R"({"type":"object","properties":{"name":{"type":"string","maxLength":8}},"required":["name"],"additionalProperties":false})",
      R"({"type":"object","properties":{"이름":{"type":"string","maxLength":5},"나이":{"type":"integer","minimum":0,"maximum":120}},"required":["이름","나이"],"additionalProperties":false})",
      R"({"type":"integer","minimum":-50,"maximum":50})",
      R"({"type":"number","minimum":0,"maximum":10})",
      R"({"type":"boolean"})",
      R"({"type":"null"})",
      R"({"enum":["서울","부산","대구","인천"]})",
      R"({"const":"고정값"})",
      R"({"type":"array","items":{"type":"integer","minimum":1,"maximum":9},"minItems":1,"maxItems":4})",
      R"({"type":"array","items":{"type":"string","maxLength":3},"maxItems":3})",
      R"({"anyOf":[{"type":"integer","minimum":0,"maximum":9},{"type":"string","maxLength":4}]})",
      R"({"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"object","properties":{"c":{"type":"boolean"}},"required":["c"],"additionalProperties":false}},"required":["b"],"additionalProperties":false}},"required":["a"],"additionalProperties":false})",
      R"({"type":"object","properties":{"x":{"type":"integer","minimum":0,"maximum":3},"y":{"type":"integer","minimum":0,"maximum":3}},"required":["x"],"additionalProperties":false})",
      R"({"type":"string","pattern":"^[0-9]{3}-[0-9]{4}$"})",
      R"({"type":"string","pattern":"^(ab|cd){1,4}[x-z]?$"})",
      R"({"type":"string","format":"date"})",
      R"({"type":"string","format":"uuid"})",
      R"({"type":"string","minLength":2,"maxLength":4})",
      R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer","minimum":0,"maximum":9},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"],"additionalProperties":false}},"$ref":"#/$defs/node"})",
      R"({"type":"object","properties":{"tag":{"enum":["좋음","나쁨"]},"score":{"type":"number","minimum":-1,"maximum":1}},"required":["tag","score"],"additionalProperties":false})",
      R"({"type":["string","null"],"maxLength":4})",
      R"({"type":"array","items":{"enum":[1,2,3]},"minItems":2,"maxItems":2})",
      R"({"type":"object","properties":{"k":{"const":1}},"required":["k"],"additionalProperties":false})",
      R"({"type":"integer","exclusiveMinimum":10,"exclusiveMaximum":20})",
      R"({"type":"object","properties":{"list":{"type":"array","items":{"type":"object","properties":{"id":{"type":"integer","minimum":0,"maximum":99}},"required":["id"],"additionalProperties":false},"maxItems":3}},"required":["list"],"additionalProperties":false})",
      R"({"oneOf":[{"type":"boolean"},{"type":"null"}]})",
      R"({"type":"string","enum":["가","나","다"]})",
      R"({"type":"object","properties":{"when":{"type":"string","format":"time"}},"required":["when"],"additionalProperties":false})",
      R"({"type":"array","items":{"anyOf":[{"type":"integer","minimum":0,"maximum":5},{"type":"boolean"}]},"maxItems":3})",
      R"({"type":"object","properties":{"a":{"type":"integer","minimum":0,"maximum":5}},"additionalProperties":false})",
      R"({"definitions":{"p":{"type":"object","properties":{"q":{"type":"string","maxLength":2}},"required":["q"],"additionalProperties":false}},"type":"array","items":{"$ref":"#/definitions/p"},"maxItems":2})",
      R"({"type":"integer","minimum":1000,"maximum":1234})",
  };
  std::vector<json> out;
  for (const char* t : texts) out.push_back(json::parse(t));
  return out;
}

bool validates(const json& schema, const json& doc, std::string* why) {
  valijson::Schema s;
  valijson::SchemaParser parser;
  valijson::adapters::NlohmannJsonAdapter sa(schema);
  parser.populateSchema(sa, s);
  valijson::Validator v;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter da(doc);
  if (v.validate(s, da, &results)) return true;
  valijson::ValidationResults::Error e;
  while (results.popError(e)) *why += e.description + "; ";
  return false;
}

TEST_F(StructuredE2E, EverySampleOfEverySchemaParsesAndValidates) {
  const auto suite = schema_suite();
  ASSERT_GE(suite.size(), 30u);
  std::vector<std::future<std::pair<int, std::string>>> replies;
  int checked = 0;
  for (size_t i = 0; i < suite.size(); ++i) {
    json body = {{"messages", {{{"role", "user"}, {"content", "JSON으로 답하세요"}}}},
                 {"response_format",
                  {{"type", "json_schema"},
                   {"json_schema",
                    {{"name", "s" + std::to_string(i)}, {"schema", suite[i]}, {"strict", true}}}}},
                 {"n", 5},
                 {"temperature", 1.0},
                 {"seed", 100 + i},
                 {"max_tokens", 256}};
    auto r = post("/v1/chat/completions", body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << i << ": " << r->body;
    const json out = json::parse(r->body);
    ASSERT_EQ(out["choices"].size(), 5u);
    for (const auto& c : out["choices"]) {
      const std::string text = c["message"]["content"];
      EXPECT_EQ(c["finish_reason"], "stop") << i << ": " << text;
      if (c["finish_reason"] != "stop") continue;
      json doc;
      ASSERT_NO_THROW(doc = json::parse(text)) << i << ": " << text;
      std::string why;
      EXPECT_TRUE(validates(suite[i], doc, &why)) << i << ": " << text << " -- " << why;
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(suite.size()) * 5);
}

TEST_F(StructuredE2E, UnsupportedKeywordsAndHostileSchemasAnswer400WithoutStalling) {
  auto ask = [&](const json& schema) {
    return post("/v1/chat/completions",
                {{"messages", {{{"role", "user"}, {"content", "x"}}}},
                 {"response_format",
                  {{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", schema}}}}},
                 {"max_tokens", 8}});
  };
  for (const char* kw : {"not", "patternProperties", "if", "dependentRequired", "uniqueItems"}) {
    json schema = {{"type", "object"}, {kw, json::object()}};
    if (std::string(kw) == "uniqueItems") schema = {{"type", "array"}, {kw, true}};
    auto r = ask(schema);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << kw << ": " << r->body;
    EXPECT_NE(r->body.find(kw), std::string::npos) << r->body;
  }
  json deep = {{"type", "integer"}};
  for (int i = 0; i < 3000; ++i) deep = {{"type", "array"}, {"items", deep}};
  json big_enum = json::array();
  for (int i = 0; i < 10000; ++i) big_enum.push_back("값" + std::to_string(i));
  json cycle = {{"$defs", {{"a", {{"$ref", "#/$defs/b"}}}, {"b", {{"$ref", "#/$defs/a"}}}}},
                {"$ref", "#/$defs/a"}};
  std::string huge(1 << 20, 'x');
  for (const json& hostile :
       {deep, json{{"enum", big_enum}}, cycle, json{{"type", "string"}, {"description", huge}}}) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = ask(hostile);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->status == 200 || r->status == 400 || r->status == 413) << r->status;
    EXPECT_LT(s, 20.0);
    httplib::Client c("127.0.0.1", server_->port());
    auto h = c.Get("/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
  }
}

TEST_F(StructuredE2E, NChoicesShareThePromptAndCountItOnce) {
  auto one = post("/v1/completions", {{"prompt", "나는 학교에서 책을"}, {"max_tokens", 5}});
  auto r = post("/v1/completions", {{"prompt", "나는 학교에서 책을"},
                                    {"max_tokens", 5},
                                    {"n", 4},
                                    {"seed", 9},
                                    {"temperature", 1.0}});
  ASSERT_EQ(r->status, 200) << r->body;
  const json out = json::parse(r->body), o1 = json::parse(one->body);
  EXPECT_EQ(out["choices"].size(), 4u);
  EXPECT_EQ(out["usage"]["prompt_tokens"], o1["usage"]["prompt_tokens"]);
  EXPECT_EQ(out["usage"]["completion_tokens"], 20);
}

// Task accuracy by likelihood two ways: the in-process scorer (ktl eval --task, the trainer's
// task_eval) and /v1/completions with echo + logprobs over the same token ids.
TEST_F(StructuredE2E, TaskScoresOverHttpEqualTheInProcessScorer) {
  ktl::LoadedCheckpoint ck = ktl::load_checkpoint(*model_);
  const std::string path = *dir_ + "/tasks.jsonl";
  {
    std::ofstream f(path);
    const char* rows[] = {
        R"({"context": "나는 학교에서", "choices": [" 책을 읽었다.", " 고양이가"], "gold": 0})",
        R"({"context": "우리는 카페에서", "choices": [" 커피를", " 노래를 불렀습니다.", " 편지를"], "gold": 0})",
        R"({"context": "고양이가 공원에서", "choices": [" 사진을 찍었다.", " 밥을"], "gold": 1})",
        R"({"context": "어머니는 시장에서", "choices": [" 영화를", " 숙제를 썼어요."], "gold": 0})"};
    for (const char* r : rows) f << r << "\n";
  }
  const ktl::McTask task = ktl::load_mc_task("mc", path);
  ktl::McEvalOptions o;
  o.shots = 1;
  const ktl::McScore direct = ktl::evaluate_mc_task(ck.model, *ck.tokenizer, task, o, torch::kCPU);
  std::vector<ktl::ScoredSequence> seqs;
  for (size_t i = 0; i < task.examples.size(); ++i)
    for (const auto& c : task.examples[i].choices)
      seqs.push_back(ktl::mc_sequence(*ck.tokenizer, ktl::few_shot_context(task, i, 1, o.seed), c,
                                      ck.config.max_seq_length));
  const auto in_process = ktl::continuation_logliks(ck.model, seqs, 4, torch::kCPU);
  json prompts = json::array();
  for (const auto& q : seqs) prompts.push_back(q.ids);
  auto r = post("/v1/completions",
                {{"prompt", prompts}, {"echo", true}, {"logprobs", 0}, {"max_tokens", 0}});
  ASSERT_EQ(r->status, 200) << r->body;
  const json out = json::parse(r->body);
  std::vector<double> http(seqs.size());
  for (const auto& c : out["choices"]) {
    const size_t i = c["index"].get<size_t>();
    const auto& lps = c["logprobs"]["token_logprobs"];
    for (size_t t = lps.size() - seqs[i].n_cont; t < lps.size(); ++t)
      http[i] += lps[t].get<double>();
  }
  std::vector<std::vector<double>> per_example;
  size_t k = 0;
  for (const auto& e : task.examples) {
    per_example.emplace_back();
    for (size_t c = 0; c < e.choices.size(); ++c, ++k) {
      EXPECT_NEAR(http[k], in_process[k], 1e-4) << k;
      per_example.back().push_back(http[k]);
    }
  }
  const ktl::McScore over_http = ktl::score_mc(task, per_example, 1);
  EXPECT_EQ(over_http.acc, direct.acc);
  EXPECT_EQ(over_http.acc_norm, direct.acc_norm);
}

}  // namespace
