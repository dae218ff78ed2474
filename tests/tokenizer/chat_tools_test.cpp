// Function calling in the chat formats: tools into the system turn, calls into the assistant's
// turn, results into tool turns (ChatML) or user turns (legacy); the reply parser; and the
// legacy Jinja template (what Hugging Face and llama.cpp render from an older checkpoint's
// tokenizer_config.json / GGUF) producing exactly the same text, checked with Python's jinja2 as
// transformers configures it (tests/tokenizer/render_chat_template.py; skipped where it is not
// installed). ChatML's golden parity is tests/tokenizer/chat_template_jinja_test.cpp.
#include "core/tokenizer/chat_tools.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace ktl {
namespace {

const std::vector<ChatToolSpec> kTools = {
    {"get_weather", "도시의 날씨",
     R"({"type": "object", "properties": {"city": {"type": "string", "enum": ["서울", "부산"]}}, "required": ["city"]})"},
    {"add", "",
     R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}})"}};

std::vector<ChatApiMessage> conversation() {
  return {{"system", "너는 도우미야.", {}},
          {"user", "서울 날씨?", {}},
          {"assistant", "", {{"get_weather", R"({"city": "서울"})"}}},
          {"tool", R"({"temp": 3})", {}},
          {"assistant", "서울은 3도예요.", {}}};
}

TEST(ChatTools, RendersToolsCallsAndResultsInTheTemplateRoles) {
  const auto msgs = render_tool_messages(conversation(), kTools);
  ASSERT_EQ(msgs.size(), 5u);
  EXPECT_EQ(msgs[0].role, "system");
  EXPECT_EQ(msgs[0].content.rfind("너는 도우미야.\n\n# Tools\n", 0), 0u) << msgs[0].content;
  EXPECT_NE(
      msgs[0].content.find(
          R"({"type": "function", "function": {"name": "get_weather", "description": "도시의 날씨", "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["서울", "부산"]}}, "required": ["city"]}}})"),
      std::string::npos)
      << msgs[0].content;
  EXPECT_EQ(msgs[2].content,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
            "\"서울\"}}\n</tool_call>");
  EXPECT_EQ(msgs[3].role, "tool");  // ChatML: a tool turn (Hermes 2 Pro's layout)
  EXPECT_EQ(msgs[3].content, "<tool_response>\n{\"temp\": 3}\n</tool_response>");
  validate_chat_messages(msgs, /*allow_tool=*/true);  // the template's rules hold
  // The legacy format has no tool role: the result is a user turn.
  const auto legacy = render_tool_messages(conversation(), kTools, ChatFormat::kLegacy);
  EXPECT_EQ(legacy[3].role, "user");
  EXPECT_EQ(legacy[3].content, msgs[3].content);
  validate_chat_messages(legacy);
  // No system message: the tools make one.
  const auto bare = render_tool_messages({{"user", "hi", {}}}, kTools);
  ASSERT_EQ(bare.size(), 2u);
  EXPECT_EQ(bare[0].content.rfind("# Tools", 0), 0u);
  EXPECT_EQ(render_tool_messages({{"user", "hi", {}}}, {}).size(), 1u);
}

TEST(ChatTools, ParsesRepliesThatAreCallsAndNothingElse) {
  auto one = parse_tool_calls(
      " <tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>");
  ASSERT_TRUE(one);
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].name, "add");
  EXPECT_EQ(nlohmann::json::parse((*one)[0].arguments), nlohmann::json({{"a", 1}, {"b", 2}}));
  auto two =
      parse_tool_calls(render_tool_call({"add", "{}"}) + "\n" + render_tool_call({"f", "[1]"}));
  ASSERT_TRUE(two);
  EXPECT_EQ(two->size(), 2u);
  EXPECT_FALSE(parse_tool_calls("안녕하세요"));
  EXPECT_FALSE(parse_tool_calls("<tool_call>\n{\"name\": \"add\", \"argu"));
  EXPECT_FALSE(parse_tool_calls("<tool_call>{\"arguments\": {}}</tool_call>"));
  EXPECT_FALSE(parse_tool_calls(render_tool_call({"add", "{}"}) + " 그리고 더"));
  EXPECT_EQ(python_json(R"({"b":1,"a":[1,{"c":"한"}]})"), R"({"b": 1, "a": [1, {"c": "한"}]})");
}

TEST(ChatTools, TheLegacyJinjaTemplateRendersTheSameText) {
  const char* py = "/usr/bin/python3";
  if (!std::filesystem::exists(py) ||
      std::system((std::string(py) + " -c 'import jinja2' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "python3-jinja2 not installed";
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();
  for (const auto& t : kTools) {
    nlohmann::ordered_json fn = {{"name", t.name}};
    if (!t.description.empty()) fn["description"] = t.description;
    fn["parameters"] = nlohmann::ordered_json::parse(t.parameters);
    nlohmann::ordered_json tool = nlohmann::ordered_json::object();
    tool["type"] = "function";
    tool["function"] = fn;
    tools.push_back(tool);
  }
  // Messages as the OpenAI API sends them (arguments as a JSON string).
  const std::string msgs_json = R"([{"role": "system", "content": "너는 도우미야."},
    {"role": "user", "content": "서울 날씨?"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"서울\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 3}"},
    {"role": "assistant", "content": "서울은 3도예요."}])";
  const auto dir =
      std::filesystem::temp_directory_path() / ("ktl_jinja_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer_config.json")
      << nlohmann::json{{"bos_token", "<s>"},
                        {"eos_token", "</s>"},
                        {"chat_template", ChatTemplate::jinja(ChatFormat::kLegacy)}}
             .dump();
  nlohmann::ordered_json convs = nlohmann::ordered_json::array();
  convs.push_back({{"messages", nlohmann::ordered_json::parse(msgs_json)},
                   {"tools", tools},
                   {"add_generation_prompt", true}});
  std::ofstream(dir / "conversations.json") << convs.dump();
  const std::string out = (dir / "out.json").string();
  const std::string cmd = std::string(py) + " " + KTL_SOURCE_DIR +
                          "/tests/tokenizer/render_chat_template.py " +
                          (dir / "tokenizer_config.json").string() + " " +
                          (dir / "conversations.json").string() + " > " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream f(out);
  const auto rendered = nlohmann::json::parse(f);
  std::filesystem::remove_all(dir);
  const std::string ours = ChatTemplate::render_text(
      ChatFormat::kLegacy, render_tool_messages(conversation(), kTools, ChatFormat::kLegacy), true);
  ASSERT_TRUE(rendered[0].contains("text")) << rendered.dump();
  EXPECT_EQ(rendered[0]["text"], ours);
}

}  // namespace
}  // namespace ktl
