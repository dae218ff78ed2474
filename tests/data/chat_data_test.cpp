// Chat data readers (JSONL messages, Q/A TSV, preferences), the held-out split, the preference
// builder, and the chrF / ROUGE-L scores.
#include "core/data/chat_data.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/data/chat_metrics.h"

namespace {

TEST(ChatData, ReadsMultiTurnJsonl) {
  const std::string text =
      R"({"messages":[{"role":"system","content":"친절하게"},{"role":"user","content":"안녕"},)"
      R"({"role":"assistant","content":"반가워요"},{"role":"user","content":"잘 가"},)"
      R"({"role":"assistant","content":"또 봐요"}]})"
      "\n\n"
      R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]})"
      "\n";
  const auto f = ktl::parse_chat_data(text, "chat.jsonl");
  EXPECT_EQ(f.format, ktl::ChatDataFormat::kOpenAi);
  const auto& c = f.conversations;
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].messages.size(), 5u);
  EXPECT_EQ(c[0].messages[0].role, "system");  // system prompts stay in the training data
  EXPECT_EQ(c[0].messages[4].content, "또 봐요");
  EXPECT_EQ(c[0].line, 1);
  EXPECT_EQ(c[1].line, 3);
}

// Bad records are skipped and counted with their line numbers, as the corpus reader does.
TEST(ChatData, SkipsAndCountsBadRecordsWithTheirLineNumbers) {
  const std::string text =
      R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]})"
      "\nnot json\n"
      R"({"messages":[{"role":"bot","content":"a"}]})"
      "\n"
      R"({"messages":[{"role":"user","content":"only a question"}]})"
      "\n"
      R"({"messages":[{"role":"user","content":3}]})"
      "\n";
  const auto f = ktl::parse_chat_data(text, "bad.jsonl");
  ASSERT_EQ(f.conversations.size(), 1u);
  EXPECT_EQ(f.error_count, 4u);
  const std::string m = f.error_report();
  EXPECT_NE(m.find("4 bad records skipped in bad.jsonl"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.jsonl:2: invalid JSON"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.jsonl:3: message 1: unknown role 'bot'"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.jsonl:4: no assistant reply"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.jsonl:5: message 1: \"content\" must be a string"), std::string::npos) << m;
  // Nothing usable at all is an error that carries the report.
  try {
    ktl::parse_chat_data("not json\n{\"messages\": 3}\n", "x.jsonl", ktl::ChatDataFormat::kOpenAi);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("x.jsonl: no usable conversations; 2 bad records"),
              std::string::npos)
        << e.what();
  }
}

TEST(ChatData, ReadsQuestionAnswerTsvWithHeader) {
  const std::string text =
      "question\tanswer\tlabel\n12시 땡!\t하루가 또 가네요.\t0\n"
      "질문만\n\t빈 질문\t0\n가\t나\n";
  const auto bad = ktl::parse_chat_data(text, "qa.tsv");
  EXPECT_EQ(bad.format, ktl::ChatDataFormat::kTsv);
  EXPECT_EQ(bad.conversations.size(), 2u);
  EXPECT_EQ(bad.error_count, 2u);
  EXPECT_NE(bad.error_report().find("qa.tsv:3: expected question<TAB>answer"), std::string::npos);
  EXPECT_NE(bad.error_report().find("qa.tsv:4: empty question"), std::string::npos);
  const auto c = ktl::parse_chat_data("q\ta\tlabel\n12시 땡!\t하루가 또 가네요.\t0\n가\t나\n", "qa")
                     .conversations;
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].messages[0].role, "user");
  EXPECT_EQ(c[0].messages[0].content, "12시 땡!");
  EXPECT_EQ(c[0].messages[1].content, "하루가 또 가네요.");
  EXPECT_EQ(c[1].messages[1].content, "나");
  EXPECT_EQ(c[1].line, 3);
}

TEST(ChatData, PreferencesParseAndBuildFromQaPairs) {
  const auto p = ktl::parse_preference_jsonl(
      R"({"prompt":"안녕","chosen":"반가워요","rejected":"몰라요"})"
      "\n"
      R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},)"
      R"({"role":"user","content":"c"}],"chosen":"d","rejected":"e"})",
      "p.jsonl");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].prompt.size(), 1u);
  EXPECT_EQ(p[1].prompt.size(), 3u);
  EXPECT_THROW(ktl::parse_preference_jsonl(R"({"prompt":"x","chosen":"y","rejected":"y"})", "p"),
               std::runtime_error);

  std::vector<ktl::ChatConversation> qa;
  for (int i = 0; i < 50; ++i)
    qa.push_back(
        {{{"user", "질문 " + std::to_string(i)}, {"assistant", "답 " + std::to_string(i % 10)}},
         i + 2});
  const auto prefs = ktl::build_preferences_from_qa(qa, 7);
  ASSERT_EQ(prefs.size(), qa.size());
  for (size_t i = 0; i < prefs.size(); ++i) {
    EXPECT_EQ(prefs[i].prompt[0].content, qa[i].messages[0].content);
    EXPECT_EQ(prefs[i].chosen, qa[i].messages[1].content);
    EXPECT_NE(prefs[i].rejected, prefs[i].chosen);
  }
  // The written JSONL reads back to the same pairs.
  const auto back = ktl::parse_preference_jsonl(ktl::preferences_to_jsonl(prefs), "round");
  ASSERT_EQ(back.size(), prefs.size());
  EXPECT_EQ(back[3].rejected, prefs[3].rejected);
}

TEST(ChatMetrics, ChrfAndRougeLOnCharacters) {
  EXPECT_DOUBLE_EQ(ktl::chrf({"안녕하세요"}, {"안녕하세요"}), 100.0);
  EXPECT_DOUBLE_EQ(ktl::rouge_l({"안녕하세요"}, {"안녕하세요"}), 100.0);
  // Spacing does not matter: whitespace is removed before counting.
  EXPECT_DOUBLE_EQ(ktl::chrf({"안녕 하세요"}, {"안녕하세요"}), 100.0);
  EXPECT_DOUBLE_EQ(ktl::chrf({"가나"}, {"다라"}), 0.0);
  EXPECT_DOUBLE_EQ(ktl::rouge_l({"가나"}, {"다라"}), 0.0);
  // ROUGE-L: hyp "가나다", ref "가다라": LCS 2 -> P = R = 2/3 -> F1 = 66.67.
  EXPECT_NEAR(ktl::rouge_l({"가나다"}, {"가다라"}), 200.0 / 3.0, 1e-9);
  // chrF by hand, hyp "가나", ref "가나다": n=1 P 1 R 2/3; n=2 P 1 R 1/2; n>=3 has no hyp
  // n-grams (skipped). P = 1, R = 7/12; F2 = 5PR / (4P + R).
  const double P = 1.0, R = 7.0 / 12.0;
  EXPECT_NEAR(ktl::chrf({"가나"}, {"가나다"}), 100.0 * 5 * P * R / (4 * P + R), 1e-9);
  EXPECT_THROW(ktl::chrf({"a"}, {}), std::invalid_argument);
}

}  // namespace
