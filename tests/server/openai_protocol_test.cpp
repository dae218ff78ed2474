// Request parsing/validation and response/SSE formatting of the OpenAI-compatible API.
#include "server/openai_protocol.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace ktl::server {
namespace {

using nlohmann::json;

ProtocolLimits limits() {
  return ProtocolLimits{};
}

// Parses and expects an ApiError; returns it.
ApiError expect_error(const std::string& body, bool chat = false) {
  try {
    parse_completion_request(body, chat, limits());
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << body;
  return ApiError(0, "");
}

TEST(OpenAiProtocol, ParsesCompletionFields) {
  auto r = parse_completion_request(
      R"({"model":"m","prompt":"안녕","max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":40,
          "min_p":0.05,"presence_penalty":0.5,"frequency_penalty":-0.5,"repetition_penalty":1.1,
          "seed":42,"stop":["\n","끝"],"stream":true,"stream_options":{"include_usage":true},
          "n":2,"echo":true})",
      false, limits());
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0], "안녕");
  EXPECT_EQ(r.sampling.max_tokens, 7);
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.1f);
  ASSERT_TRUE(r.sampling.seed.has_value());
  EXPECT_EQ(*r.sampling.seed, 42u);
  EXPECT_EQ(r.sampling.stop, (std::vector<std::string>{"\n", "끝"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.echo);
}

TEST(OpenAiProtocol, DefaultsAndAlternatives) {
  auto r = parse_completion_request(R"({"prompt":["a","b"],"stop":"x","max_completion_tokens":3})",
                                    false, limits());
  EXPECT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.sampling.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(r.sampling.max_tokens, 3);
  auto d = parse_completion_request(R"({"prompt":"a","top_k":-1,"seed":null})", false, limits());
  EXPECT_EQ(d.sampling.max_tokens, limits().default_max_tokens);
  EXPECT_FALSE(d.max_tokens_given);
  EXPECT_EQ(d.sampling.top_k, 0);
  EXPECT_FALSE(d.sampling.seed.has_value());
  EXPECT_FALSE(d.stream);
  auto ids = parse_completion_request(R"({"prompt":[5,6,7]})", false, limits());
  ASSERT_EQ(ids.prompt_ids.size(), 1u);
  EXPECT_EQ(ids.prompt_ids[0], (std::vector<int>{5, 6, 7}));
  auto f = parse_completion_request(R"({"prompt":"a","max_tokens":5.0})", false, limits());
  EXPECT_EQ(f.sampling.max_tokens, 5);
}

TEST(OpenAiProtocol, RejectsBadBodies) {
  EXPECT_EQ(expect_error("{not json").code, "invalid_json");
  EXPECT_EQ(expect_error("[1,2]").code, "invalid_json");
  EXPECT_EQ(expect_error("").status, 400);
  EXPECT_EQ(expect_error(R"({"prompt":""})").code, "empty_prompt");
  EXPECT_EQ(expect_error(R"({"prompt":[]})").code, "empty_prompt");
  EXPECT_EQ(expect_error(R"({})").param, "prompt");
  EXPECT_EQ(expect_error(R"({"prompt":5})").param, "prompt");
  EXPECT_EQ(expect_error(R"({"prompt":"a","max_tokens":"10"})").param, "max_tokens");
  EXPECT_EQ(expect_error(R"({"prompt":"a","max_tokens":-1})").param, "max_tokens");
  EXPECT_EQ(
      expect_error(R"({"messages":[{"role":"user","content":"a"}],"max_tokens":0})", true).param,
      "max_tokens");
  EXPECT_EQ(expect_error(R"({"prompt":"a","max_tokens":1000000000000})").param, "max_tokens");
  EXPECT_EQ(expect_error(R"({"prompt":"a","max_tokens":1.5})").param, "max_tokens");
  EXPECT_EQ(expect_error(R"({"prompt":"a","temperature":"hot"})").param, "temperature");
  EXPECT_EQ(expect_error(R"({"prompt":"a","temperature":-1})").param, "temperature");
  EXPECT_EQ(expect_error(R"({"prompt":"a","top_p":0})").param, "top_p");
  EXPECT_EQ(expect_error(R"({"prompt":"a","stream":"yes"})").param, "stream");
  EXPECT_EQ(expect_error(R"({"prompt":"a","stop":[1]})").param, "stop");
  EXPECT_EQ(expect_error(R"({"prompt":"a","stop":["a","b","c","d","e"]})").param, "stop");
  EXPECT_EQ(expect_error(R"({"prompt":"a","n":0})").param, "n");
  EXPECT_EQ(expect_error(R"({"prompt":"a","n":1000})").param, "n");
  EXPECT_EQ(expect_error(R"({"prompt":"a","model":7})").param, "model");
  EXPECT_EQ(expect_error(R"({"prompt":"a","logprobs":21})").param, "logprobs");
  EXPECT_EQ(expect_error(R"({"prompt":"a","tools":[]})").param, "tools");
  EXPECT_EQ(expect_error(R"({"prompt":"a","best_of":2})").code, "unsupported_parameter");
  EXPECT_EQ(expect_error(R"({"prompt":[-1]})").param, "prompt");
}

// Found by tests/fuzz (openai_request): a number too big for a double made the JSON library
// throw out_of_range, not parse_error, which escaped as a 500.
TEST(OpenAiProtocol, NumberOverflowIsInvalidJson) {
  for (bool chat : {false, true}) {
    ApiError e = expect_error(R"({"prompt":"x","max_tokens":1e330})", chat);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "invalid_json");
  }
  EXPECT_THROW(parse_tokenize_request(R"({"text":"a","n":-1e400})"), ApiError);
  EXPECT_THROW(parse_detokenize_request(R"({"tokens":[1e999]})", 100), ApiError);
}

// Found by tests/fuzz (openai_request): a content part whose "type" is not a string threw
// nlohmann's type_error out of the parser (a 500) instead of a 400.
TEST(OpenAiProtocol, ContentPartWithNonStringTypeIs400) {
  for (const char* part : {R"({"type":42,"text":"a"})", R"({"type":null,"text":"a"})",
                           R"({"type":["text"],"text":"a"})", R"("text")"}) {
    ApiError e = expect_error(
        std::string(R"({"messages":[{"role":"user","content":[)") + part + "]}]}", true);
    EXPECT_EQ(e.status, 400) << part;
    EXPECT_EQ(e.param, "messages[0].content") << part;
  }
}

TEST(OpenAiProtocol, RejectsInvalidUtf8) {
  const std::string raw = std::string(R"({"prompt":")") + "\xff\xfe" + R"("})";
  ApiError e = expect_error(raw);
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.code, "invalid_utf8");
  // A lone surrogate written as an escape is not text either.
  EXPECT_EQ(expect_error(R"({"prompt":"\udc80"})").status, 400);
}

TEST(OpenAiProtocol, Utf8Validator) {
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("한국어 텍스트 😀"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xea\xb0"));          // truncated 가
  EXPECT_FALSE(is_valid_utf8("\x80"));
}

TEST(OpenAiProtocol, ChatMessagesAndTemplate) {
  auto r = parse_completion_request(
      R"({"messages":[{"role":"system","content":"친절하게"},{"role":"user","content":[{"type":"text","text":"안녕"}]}]})",
      true, limits());
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "안녕");
  EXPECT_EQ(r.sampling.max_tokens, limits().default_chat_max_tokens);
  EXPECT_EQ(apply_chat_template(r.messages), "시스템: 친절하게\n사용자: 안녕\n어시스턴트: ");
  // The template's turn marker is a stop string so the model does not speak for the user.
  EXPECT_NE(std::find(r.sampling.stop.begin(), r.sampling.stop.end(), "\n사용자:"),
            r.sampling.stop.end());
  EXPECT_EQ(expect_error(R"({"messages":[]})", true).code, "empty_prompt");
  EXPECT_EQ(expect_error(R"({"messages":[{"role":"user","content":""}]})", true).code,
            "empty_prompt");
  EXPECT_EQ(expect_error(R"({"messages":[{"role":"robot","content":"x"}]})", true).param,
            "messages[0].role");
  EXPECT_EQ(expect_error(R"({"messages":"hi"})", true).param, "messages");
}

TEST(OpenAiProtocol, CompletionResponseJson) {
  ResponseMeta meta{"cmpl-1", 1700000000, "tiny", false};
  json j = json::parse(completion_response_json(
      meta, {{0, "가나", FinishReason::kLength}, {1, "다", FinishReason::kStop}}, {5, 3, 2}));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "가나");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["choices"][1]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_EQ(j["usage"]["total_tokens"], 8);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
  meta.chat = true;
  json c = json::parse(completion_response_json(meta, {{0, "응", FinishReason::kStop}}, {1, 1, 0}));
  EXPECT_EQ(c["object"], "chat.completion");
  EXPECT_EQ(c["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(c["choices"][0]["message"]["content"], "응");
}

TEST(OpenAiProtocol, StreamChunksAndSse) {
  ResponseMeta meta{"chatcmpl-9", 1, "tiny", true};
  json first = json::parse(stream_chunk_json(meta, 0, "", FinishReason::kNone, true, false));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(first.contains("usage"));
  json mid = json::parse(stream_chunk_json(meta, 0, "한글", FinishReason::kNone, false, true));
  EXPECT_EQ(mid["choices"][0]["delta"]["content"], "한글");
  EXPECT_FALSE(mid["choices"][0]["delta"].contains("role"));
  EXPECT_TRUE(mid.contains("usage") && mid["usage"].is_null());
  json last = json::parse(stream_chunk_json(meta, 0, "", FinishReason::kStop, false, false));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  json u = json::parse(usage_chunk_json(meta, {4, 6, 0}));
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 10);

  meta.chat = false;
  json t = json::parse(stream_chunk_json(meta, 1, "줄\n바꿈", FinishReason::kNone, false, false));
  EXPECT_EQ(t["choices"][0]["text"], "줄\n바꿈");
  EXPECT_EQ(t["choices"][0]["index"], 1);
  // One SSE event per chunk: the JSON carries the newline escaped, so the frame stays intact.
  std::string ev = sse_event(stream_chunk_json(meta, 0, "a\nb", FinishReason::kNone, false, false));
  EXPECT_EQ(ev.rfind("data: {", 0), 0u);
  EXPECT_EQ(ev.substr(ev.size() - 2), "\n\n");
  EXPECT_EQ(ev.find('\n'), ev.size() - 2);
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
}

TEST(OpenAiProtocol, TokenizeRequests) {
  EXPECT_EQ(parse_tokenize_request(R"({"prompt":"가"})").text, "가");
  auto t = parse_tokenize_request(R"({"text":"나","add_special_tokens":false})");
  EXPECT_EQ(t.text, "나");
  EXPECT_FALSE(t.add_bos);
  EXPECT_THROW(parse_tokenize_request(R"({"prompt":3})"), ApiError);
  EXPECT_THROW(parse_tokenize_request(R"({})"), ApiError);
  EXPECT_EQ(parse_detokenize_request(R"({"tokens":[1,2,3]})", 10), (std::vector<int>{1, 2, 3}));
  EXPECT_THROW(parse_detokenize_request(R"({"tokens":[10]})", 10), ApiError);
  EXPECT_THROW(parse_detokenize_request(R"({"tokens":["a"]})", 10), ApiError);
  EXPECT_THROW(parse_detokenize_request(R"({"tokens":5})", 10), ApiError);
}

// Every body error is a 400 ApiError, never an escaped nlohmann exception (a 500).
template <class F>
int status_of(F f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e.status;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an ApiError: " << e.what();
    return 500;
  }
  return 200;
}

TEST(OpenAiProtocol, NumbersBeyondADoubleAre400) {
  for (bool chat : {false, true}) {
    const std::string head =
        chat ? R"({"messages":[{"role":"user","content":"a"}],)" : R"({"prompt":"a",)";
    for (const char* tail : {R"("max_tokens":1e309})", R"("temperature":-1e309})",
                             R"("seed":1e400})", R"("n":123456789012345678901234567890})"})
      EXPECT_EQ(status_of([&] { parse_completion_request(head + tail, chat, limits()); }), 400)
          << head + tail;
  }
  EXPECT_EQ(status_of([] { parse_tokenize_request(R"({"prompt":"a","x":1e309})"); }), 400);
  EXPECT_EQ(status_of([] { parse_detokenize_request(R"({"tokens":[1e309]})", 10); }), 400);
  EXPECT_EQ(status_of([] { parse_json_object(R"({"path":"x","wait":1e309})"); }), 400);
}

TEST(OpenAiProtocol, IntegerFieldsAreRangeChecked) {
  for (const char* mt : {"1e30", "-1", "2.5", "-1e30", "18446744073709551615", "\"5\"", "true"})
    EXPECT_EQ(expect_error(std::string(R"({"prompt":"a","max_tokens":)") + mt + "}").status, 400)
        << mt;
  EXPECT_EQ(parse_completion_request(R"({"prompt":"a","max_tokens":5.0})", false, limits())
                .sampling.max_tokens,
            5);
  EXPECT_EQ(status_of([] { parse_detokenize_request(R"({"tokens":[18446744073709551615]})", 10); }),
            400);
  EXPECT_EQ(expect_error(R"({"prompt":[18446744073709551615]})").status, 400);
}

TEST(OpenAiProtocol, ContentPartTypeMustBeAString) {
  for (const char* type : {"1", "null", "[]", "{}", "\"image_url\""}) {
    const std::string body = std::string(R"({"messages":[{"role":"user","content":[{"type":)") +
                             type + R"(,"text":"a"}]}]})";
    EXPECT_EQ(status_of([&] { parse_completion_request(body, true, limits()); }), 400) << body;
  }
}

TEST(OpenAiProtocol, BodyIsExactlyOneJsonValue) {
  const std::string nul_tail = std::string(R"({"prompt":"a"})") + '\0' + "garbage";
  EXPECT_EQ(expect_error(nul_tail).status, 400);
  EXPECT_EQ(status_of([&] { parse_tokenize_request(nul_tail); }), 400);
  EXPECT_EQ(status_of([&] { parse_json_object(std::string(R"({"path":"x"})") + '\0'); }), 400);
  EXPECT_EQ(expect_error(R"({"prompt":"a"} {})").status, 400);
  EXPECT_EQ(parse_completion_request(" \n{\"prompt\":\"a\"}\r\n ", false, limits()).prompts[0],
            "a");
}

TEST(ApiErrorJson, OpenAiShape) {
  json j = json::parse(error_json(413, "too big"));
  EXPECT_EQ(j["error"]["message"], "too big");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["code"], "payload_too_large");
  EXPECT_TRUE(j["error"]["param"].is_null());
  EXPECT_EQ(json::parse(error_json(405, "m"))["error"]["code"], "method_not_allowed");
  EXPECT_EQ(json::parse(error_json(408, "t"))["error"]["code"], "request_timeout");
  json k = json::parse(error_json(429, "busy", "queue_full", "x"));
  EXPECT_EQ(k["error"]["type"], "rate_limit_error");
  EXPECT_EQ(k["error"]["code"], "queue_full");
  EXPECT_EQ(k["error"]["param"], "x");
}

}  // namespace
}  // namespace ktl::server

namespace ktl::server {
namespace {

CompletionRequest parse_ok(const std::string& body, bool chat) {
  return parse_completion_request(body, chat, ProtocolLimits{});
}

TEST(OpenAiDialect, LogprobsEchoAndScoringShapes) {
  auto c = parse_ok(R"({"prompt":["a","b"],"echo":true,"logprobs":1,"max_tokens":0})", false);
  EXPECT_EQ(c.logprobs, 1);
  EXPECT_TRUE(c.echo);
  EXPECT_EQ(c.sampling.max_tokens, 0);
  EXPECT_EQ(parse_ok(R"({"prompt":"a","logprobs":0})", false).logprobs, 0);
  EXPECT_EQ(parse_ok(R"({"prompt":"a"})", false).logprobs, -1);
  auto chat = parse_ok(
      R"({"messages":[{"role":"user","content":"a"}],"logprobs":true,"top_logprobs":5})", true);
  EXPECT_EQ(chat.logprobs, 5);
  EXPECT_EQ(
      parse_ok(R"({"messages":[{"role":"user","content":"a"}],"logprobs":false})", true).logprobs,
      -1);
  ApiError e{400, ""};
  try {
    parse_ok(R"({"messages":[{"role":"user","content":"a"}],"top_logprobs":2})", true);
  } catch (const ApiError& x) {
    e = x;
  }
  EXPECT_EQ(e.param, "top_logprobs");
}

TEST(OpenAiDialect, ResponseFormatToolsAndToolMessages) {
  auto j = parse_ok(R"({"messages":[{"role":"user","content":"a"}],
      "response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"integer"},"strict":true}}})",
                    true);
  EXPECT_EQ(j.format.kind, ResponseFormat::Kind::kJsonSchema);
  EXPECT_EQ(j.format.schema, R"({"type":"integer"})");
  EXPECT_EQ(
      parse_ok(R"({"prompt":"a","response_format":{"type":"json_object"}})", false).format.kind,
      ResponseFormat::Kind::kJsonObject);
  EXPECT_EQ(parse_ok(R"({"prompt":"a","grammar":"root ::= \"x\""})", false).format.kind,
            ResponseFormat::Kind::kGrammar);
  auto t = parse_ok(R"({"messages":[{"role":"user","content":"w"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
        "function":{"name":"f","arguments":"{\"x\": 1}"}}]},
      {"role":"tool","tool_call_id":"c1","content":"ok"}],
      "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
      "tool_choice":{"type":"function","function":{"name":"f"}}})",
                    true);
  ASSERT_EQ(t.messages.size(), 3u);
  EXPECT_EQ(t.messages[1].tool_calls.at(0).arguments, R"({"x": 1})");
  EXPECT_EQ(t.messages[2].tool_call_id, "c1");
  EXPECT_EQ(t.tool_choice, ToolChoice::kNamed);
  EXPECT_TRUE(t.tools_active());
  for (
      const char* bad :
      {R"({"messages":[{"role":"user","content":"a"}],"tools":[{"type":"function","function":{"name":"bad name"}}]})",
       R"({"messages":[{"role":"user","content":"a"}],"tools":[{"type":"code"}]})",
       R"({"messages":[{"role":"user","content":"a"}],"tool_choice":{"type":"function","function":{"name":"g"}}})",
       R"({"messages":[{"role":"tool","content":"a"}]})",
       R"({"messages":[{"role":"user","content":"a"}],"response_format":{"type":"xml"}})",
       R"({"messages":[{"role":"user","content":"a"}],"grammar":"x","response_format":{"type":"json_object"}})"}) {
    EXPECT_THROW(parse_ok(bad, true), ApiError) << bad;
  }
}

TEST(OpenAiDialect, LogprobsAndToolCallsAreFormattedAsOpenAiDoes) {
  ResponseMeta meta{"chatcmpl-1", 1, "m", true};
  LogprobEntry e;
  e.text = "bytes:\\xec";
  e.bytes = {0xEC};
  e.logprob = -0.5f;
  e.top = {{"a", -0.1f}};
  e.top_bytes = {{'a'}};
  ChoiceResult c{0, "", FinishReason::kStop, true, {e}, {{"call_1", "f", R"({"x": 1})"}}};
  const auto j = nlohmann::json::parse(completion_response_json(meta, {c}, Usage{}));
  const auto& ch = j["choices"][0];
  EXPECT_EQ(ch["finish_reason"], "tool_calls");
  EXPECT_TRUE(ch["message"]["content"].is_null());
  EXPECT_EQ(ch["message"]["tool_calls"][0]["function"]["arguments"], R"({"x": 1})");
  EXPECT_EQ(ch["logprobs"]["content"][0]["bytes"], nlohmann::json::array({0xEC}));
  EXPECT_EQ(ch["logprobs"]["content"][0]["top_logprobs"][0]["token"], "a");
  meta.chat = false;
  e.logprob.reset();
  c.logprobs = {e};
  c.tool_calls.clear();
  const auto k = nlohmann::json::parse(completion_response_json(meta, {c}, Usage{}));
  EXPECT_TRUE(k["choices"][0]["logprobs"]["token_logprobs"][0].is_null());
  EXPECT_TRUE(k["choices"][0]["logprobs"]["top_logprobs"][0].is_null());
  EXPECT_EQ(k["choices"][0]["finish_reason"], "stop");
}

}  // namespace
}  // namespace ktl::server
