// Chat data formats against golden files in tests/data/chat/: each input X is read with the
// format detected from its content and must give exactly X.golden.jsonl (the conversations as
// OpenAI messages JSONL, what `ktl chat-data --split-out` writes); the bad inputs must report
// their records' lines. The golden files were written by a separate Python transcription of the
// mapping rules (chat_data.h), not by this reader.
#include <gtest/gtest.h>

#include <string>

#include "core/base/file_util.h"
#include "core/data/chat_data.h"

namespace {

const std::string kDir = std::string(KTL_SOURCE_DIR) + "/tests/data/chat/";

struct Golden {
  const char* input;
  ktl::ChatDataFormat format;
  size_t conversations;
};

class ChatFormatGolden : public ::testing::TestWithParam<Golden> {};

TEST_P(ChatFormatGolden, DetectsTheFormatAndMatchesTheGoldenConversations) {
  const Golden g = GetParam();
  const auto f = ktl::read_chat_file(kDir + g.input);
  EXPECT_EQ(f.format, g.format) << ktl::chat_data_format_name(f.format);
  EXPECT_EQ(f.error_count, 0u) << f.error_report();
  EXPECT_EQ(f.conversations.size(), g.conversations);
  const std::string golden = std::string(g.input) + ".golden.jsonl";
  EXPECT_EQ(ktl::conversations_to_jsonl(f.conversations), ktl::read_file(kDir + golden))
      << "golden file " << golden;
  // The forced format reads the same.
  EXPECT_EQ(ktl::read_chat_file(kDir + g.input, g.format).conversations.size(), g.conversations);
}

INSTANTIATE_TEST_SUITE_P(
    Files, ChatFormatGolden,
    ::testing::Values(Golden{"openai.jsonl", ktl::ChatDataFormat::kOpenAi, 2},
                      Golden{"sharegpt.json", ktl::ChatDataFormat::kShareGpt, 2},
                      Golden{"sharegpt.jsonl", ktl::ChatDataFormat::kShareGpt, 2},
                      Golden{"alpaca.json", ktl::ChatDataFormat::kAlpaca, 3},
                      Golden{"alpaca.jsonl", ktl::ChatDataFormat::kAlpaca, 2}),
    [](const auto& info) {
      std::string n = info.param.input;
      for (char& c : n)
        if (c == '.') c = '_';
      return n;
    });

TEST(ChatFormats, AlpacaJoinsInstructionAndInputAndKeepsTheSystemPrompt) {
  const auto c = ktl::read_chat_file(kDir + "alpaca.json").conversations;
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].messages[0].content, "다음 문장을 영어로 옮기세요.\n\n오늘 날씨가 좋다.");
  EXPECT_EQ(c[1].messages[0].content, "한국의 수도는?");  // empty input: the instruction alone
  EXPECT_EQ(c[2].messages[0].role, "system");
  EXPECT_EQ(c[2].messages[0].content, "밝게");
  EXPECT_EQ(c[0].line, 2);  // the line where each array element starts
  EXPECT_EQ(c[2].line, 4);
}

TEST(ChatFormats, OpenAiDeveloperRoleAndTextParts) {
  const auto c = ktl::read_chat_file(kDir + "openai.jsonl").conversations;
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].messages[0].role, "system");            // system prompts stay in the training data
  EXPECT_EQ(c[1].messages[0].role, "system");            // "developer" is the system role
  EXPECT_EQ(c[1].messages[1].content, "오늘 뭐 먹지?");  // text parts concatenated
}

// Tools, calls and tool results become what the chat API renders for the model
// (render_tool_messages): the tool list in the system turn, the call in the assistant's
// content, the result wrapped in <tool_response> as a `tool` turn (ChatML) or a user turn
// (formats without a tool role). No golden file: the result's role is the chat format's.
TEST(ChatFormats, OpenAiToolTurnsAreRenderedAsTheApiRendersThem) {
  const auto f = ktl::read_chat_file(kDir + "openai_tools.jsonl");
  EXPECT_EQ(f.error_count, 0u) << f.error_report();
  ASSERT_EQ(f.conversations.size(), 1u);
  EXPECT_EQ(f.conversations[0].line, 2);
  const auto& m = f.conversations[0].messages;
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_NE(m[0].content.find("\"name\": \"get_weather\""), std::string::npos) << m[0].content;
  EXPECT_EQ(m[1].content, "서울 날씨 알려줘");
  EXPECT_EQ(m[2].role, "assistant");
  EXPECT_EQ(m[2].content,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"서울\"}}\n"
            "</tool_call>");
  EXPECT_TRUE(m[3].role == "tool" || m[3].role == "user") << m[3].role;
  EXPECT_EQ(m[3].content, "<tool_response>\n{\"temp\": 3}\n</tool_response>");
  EXPECT_EQ(m[4].content, "서울은 지금 3도예요.");
}

TEST(ChatFormats, BadJsonLinesAreSkippedWithTheirLines) {
  const auto f = ktl::read_chat_file(kDir + "bad.jsonl");
  EXPECT_EQ(f.format, ktl::ChatDataFormat::kOpenAi);
  ASSERT_EQ(f.conversations.size(), 2u);
  EXPECT_EQ(f.conversations[0].line, 1);
  EXPECT_EQ(f.conversations[1].line, 8);
  EXPECT_EQ(f.error_count, 6u) << f.error_report();
  const std::string r = f.error_report();
  const std::string p = kDir + "bad.jsonl:";
  EXPECT_NE(r.find(p + "2: invalid JSON"), std::string::npos) << r;
  EXPECT_NE(r.find(p + "3: message 1: unknown role 'bot'"), std::string::npos) << r;
  EXPECT_NE(r.find(p + "4: no assistant reply to learn"), std::string::npos) << r;
  EXPECT_NE(r.find(p + "5: message 1: \"content\" must be"), std::string::npos) << r;
  EXPECT_NE(r.find(p + "6: expected {\"messages\": [...]} (the file's format: openai)"),
            std::string::npos)
      << r;
  EXPECT_NE(r.find(p + "7: message 2: a system message may only come first"), std::string::npos)
      << r;
}

TEST(ChatFormats, BadJsonArrayElementsAreSkippedWithTheLineTheyStartOn) {
  const auto f = ktl::read_chat_file(kDir + "bad.json");
  EXPECT_EQ(f.format, ktl::ChatDataFormat::kShareGpt);
  std::vector<std::string> kept;
  for (const auto& c : f.conversations) kept.push_back(c.messages[0].content);
  EXPECT_EQ(kept, (std::vector<std::string>{"q1", "q4", "q6", "q7"}));
  EXPECT_EQ(f.error_count, 4u) << f.error_report();
  const std::string r = f.error_report();
  const std::string p = kDir + "bad.json:";
  EXPECT_NE(r.find(p + "3: turn 1: unknown \"from\" 'alien'"), std::string::npos) << r;
  EXPECT_NE(r.find(p + "4: no assistant reply to learn"), std::string::npos) << r;
  EXPECT_NE(r.find(p + "6: invalid JSON"), std::string::npos) << r;
  EXPECT_NE(r.find(p + "9: expected ',' or ']' after an array element (rest of file skipped)"),
            std::string::npos)
      << r;
}

TEST(ChatFormats, DetectionAndForcedFormats) {
  // A BOM and leading blank lines do not hide the format.
  const auto a = ktl::parse_chat_data("\xEF\xBB\xBF\n[{\"instruction\": \"i\", \"output\": \"o\"}]",
                                      "bom.json");
  EXPECT_EQ(a.format, ktl::ChatDataFormat::kAlpaca);
  EXPECT_EQ(a.conversations.size(), 1u);
  // Not JSON and no tab in the first line: the format cannot be told.
  EXPECT_THROW(ktl::parse_chat_data("hello\nworld\n", "x.txt"), std::runtime_error);
  EXPECT_THROW(ktl::parse_chat_data(" \n", "empty.jsonl"), std::runtime_error);
  // A forced format that does not match reports every record.
  try {
    ktl::parse_chat_data("{\"instruction\": \"i\", \"output\": \"o\"}\n", "a.jsonl",
                         ktl::ChatDataFormat::kShareGpt);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("a.jsonl:1: expected {\"conversations\": [...]}"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(ktl::chat_data_format_from_name("sharegpt"), ktl::ChatDataFormat::kShareGpt);
  EXPECT_THROW(ktl::chat_data_format_from_name("csv"), std::invalid_argument);
}

}  // namespace
