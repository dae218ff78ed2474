// The one train/val/test split of chat data (core/data/chat_split.h): normalised keys, groups
// joined by shared prompts and answers, no key in two splits, preference pairs per split, split
// directories.
#include "core/data/chat_split.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <map>
#include <set>

#include "core/base/file_util.h"
#include "core/data/dataset_split.h"

namespace {

namespace fs = std::filesystem;

ktl::ChatConversation qa(const std::string& q, const std::string& a, int64_t line = 0) {
  return {{{"user", q}, {"assistant", a}}, line};
}

TEST(ChatSplit, NormalisesPromptsAndAnswersForTheKeys) {
  using ktl::normalize_for_split;
  EXPECT_EQ(normalize_for_split("좋아요!!"), "좋아요");
  EXPECT_EQ(normalize_for_split("  좋아요 ~^^ "), "좋아요");
  EXPECT_EQ(normalize_for_split("\"Hello,   World.\""), "hello, world");  // inner "," stays
  EXPECT_EQ(normalize_for_split("ＡＢＣ　１２３"),
            "abc 123");  // NFKC: full width, ideographic space
  EXPECT_EQ(normalize_for_split("가\t\n나"), "가 나");
  // Decomposed jamo compose (NFKC) into the same syllables.
  EXPECT_EQ(normalize_for_split("\xE1\x84\x80\xE1\x85\xA1"), "가");
  EXPECT_EQ(normalize_for_split("?"), "?");  // only punctuation: kept, not ""
  EXPECT_EQ(normalize_for_split("^^;"), "^^;");
  EXPECT_EQ(normalize_for_split("a\xFF b"), "a\xEF\xBF\xBD b");  // invalid byte: U+FFFD
  EXPECT_EQ(normalize_for_split(""), "");
}

// A data set whose prompts and answers are shared in chains, written with varying case,
// spacing and punctuation, as chatbot-qa.tsv repeats its stock answers. With n = 3000 (600)
// the chains close into 500 (100) groups of six conversations.
std::vector<ktl::ChatConversation> chained_data(int n) {
  const char* decor[] = {"", "!", ".", " ~", "?!", "  "};
  std::vector<ktl::ChatConversation> all;
  for (int i = 0; i < n; ++i) {
    const std::string q = "질문 " + std::to_string(i % (n / 2)) + decor[i % 6];
    const std::string a =
        (i % 3 ? "Answer " : "answer ") + std::to_string((i * 7) % (n / 3)) + decor[(i / 6) % 6];
    all.push_back(qa(q, a, i + 2));
  }
  return all;
}

void expect_no_key_crosses(const ktl::ChatSplit& s) {
  std::map<std::string, std::set<int>> where;  // normalised prompt or answer -> splits
  const std::vector<ktl::ChatConversation>* lists[] = {&s.train, &s.val, &s.test};
  for (int b = 0; b < 3; ++b)
    for (const auto& c : *lists[b])
      for (const auto& m : c.messages)
        where[m.role + ":" + ktl::normalize_for_split(m.content)].insert(b);
  for (const auto& [key, splits] : where) EXPECT_EQ(splits.size(), 1u) << key;
  EXPECT_TRUE(ktl::crossing_split_keys(s).empty());
}

TEST(ChatSplit, NoNormalisedPromptOrAnswerCrossesSplits) {
  const auto all = chained_data(3000);
  ktl::ChatSplitConfig cfg;
  cfg.val_fraction = 0.1;
  cfg.test_fraction = 0.1;
  const auto s = ktl::split_conversations(all, cfg);
  EXPECT_EQ(s.conversations, 3000);
  EXPECT_EQ(int64_t(s.train.size() + s.val.size() + s.test.size()), s.conversations);
  EXPECT_EQ(s.merged, s.conversations - s.groups);
  EXPECT_EQ(s.groups, 500);
  EXPECT_EQ(s.merged, 2500);
  EXPECT_GT(s.val.size(), 0u);
  EXPECT_GT(s.test.size(), 0u);
  expect_no_key_crosses(s);

  // The same data in another order gives the same split.
  std::vector<ktl::ChatConversation> rev(all.rbegin(), all.rend());
  const auto r = ktl::split_conversations(rev, cfg);
  std::multiset<std::string> a, b;
  for (const auto& c : s.test) a.insert(c.messages[0].content + "|" + c.messages[1].content);
  for (const auto& c : r.test) b.insert(c.messages[0].content + "|" + c.messages[1].content);
  EXPECT_EQ(a, b);
  EXPECT_EQ(r.groups, s.groups);
}

TEST(ChatSplit, SharesAreAboutTheFractions) {
  std::vector<ktl::ChatConversation> all;
  for (int i = 0; i < 4000; ++i)
    all.push_back(qa("질문 " + std::to_string(i), "답 " + std::to_string(i)));
  const auto s = ktl::split_conversations(all);  // defaults: val 0.05, test 0.05
  EXPECT_EQ(s.groups, 4000);
  EXPECT_EQ(s.merged, 0);
  EXPECT_NEAR(double(s.val.size()) / 4000, 0.05, 0.015);
  EXPECT_NEAR(double(s.test.size()) / 4000, 0.05, 0.015);
  ktl::ChatSplitConfig bad;
  bad.val_fraction = 0.5;
  bad.test_fraction = 0.5;
  EXPECT_THROW(ktl::split_conversations(all, bad), std::invalid_argument);
}

TEST(ChatSplit, SharedAnswerOrPromptJoinsAGroupTransitively) {
  // q1-a1, q2-a1 (same answer, other punctuation), q2-a2 (same prompt), q3-a3 alone.
  const std::vector<ktl::ChatConversation> all = {qa("q1", "a1."), qa("q2", "A1!"), qa("Q2?", "a2"),
                                                  qa("q3", "a3")};
  ktl::ChatSplitConfig cfg;
  cfg.val_fraction = 0.45;
  cfg.test_fraction = 0.45;
  const auto s = ktl::split_conversations(all, cfg);
  EXPECT_EQ(s.groups, 2);
  EXPECT_EQ(s.merged, 2);
  EXPECT_EQ(s.largest_group, 3);
  // The group of three is larger than a held-out split's target (0.45 * 4 = 1.8): it stays in
  // train whatever its hash; with a seed that hashes it (its smallest key, "aa1") to a held-out
  // split, it is counted as oversized.
  std::set<std::string> train_q;
  for (const auto& c : s.train) train_q.insert(c.messages[0].content);
  EXPECT_TRUE(train_q.count("q1") && train_q.count("q2") && train_q.count("Q2?"));
  ktl::ChatSplitConfig held = cfg;
  for (held.seed = 1;; ++held.seed) {
    ktl::SplitConfig sc;
    sc.val_fraction = held.val_fraction;
    sc.test_fraction = held.test_fraction;
    sc.seed = held.seed;
    if (ktl::DatasetSplit(sc).assign("aa1") != ktl::Split::kTrain) break;
  }
  const auto o = ktl::split_conversations(all, held);
  EXPECT_EQ(o.oversized_groups, 1);
  EXPECT_GE(o.train.size(), 3u);
  expect_no_key_crosses(s);
  // System prompts are not keys: one shared system prompt does not join everything.
  std::vector<ktl::ChatConversation> sys;
  for (int i = 0; i < 100; ++i)
    sys.push_back({{{"system", "친절하게"},
                    {"user", "q" + std::to_string(i)},
                    {"assistant", "a" + std::to_string(i)}}});
  EXPECT_EQ(ktl::split_conversations(sys, cfg).groups, 100);
}

TEST(ChatSplit, TrainingPreferencePairsNeverUseHeldOutReferences) {
  ktl::ChatSplitConfig cfg;
  cfg.val_fraction = 0.1;
  cfg.test_fraction = 0.1;
  const auto s = ktl::split_conversations(chained_data(3000), cfg);
  const auto p = ktl::build_preference_split(s, 7);
  EXPECT_GT(p.train.size(), s.train.size() / 2);
  EXPECT_GT(p.val.size(), 0u);
  EXPECT_GT(p.test.size(), 0u);
  auto keys = [](const std::vector<ktl::ChatConversation>& l, const std::string& role) {
    std::set<std::string> out;
    for (const auto& c : l)
      for (const auto& m : c.messages)
        if (m.role == role) out.insert(ktl::normalize_for_split(m.content));
    return out;
  };
  const std::vector<ktl::ChatConversation>* lists[] = {&s.train, &s.val, &s.test};
  const std::vector<ktl::PreferencePair>* pairs[] = {&p.train, &p.val, &p.test};
  for (int b = 0; b < 3; ++b) {
    const auto prompts = keys(*lists[b], "user"), answers = keys(*lists[b], "assistant");
    for (const auto& pair : *pairs[b]) {
      // Chosen and rejected both come from this split's own answers, so (answers never crossing
      // splits) a training pair never holds a val/test reference, and a held-out pair never a
      // trained-on answer.
      EXPECT_TRUE(answers.count(ktl::normalize_for_split(pair.chosen))) << pair.chosen;
      EXPECT_TRUE(answers.count(ktl::normalize_for_split(pair.rejected))) << pair.rejected;
      EXPECT_TRUE(prompts.count(ktl::normalize_for_split(pair.prompt.back().content)));
      EXPECT_NE(ktl::normalize_for_split(pair.chosen), ktl::normalize_for_split(pair.rejected));
    }
  }
  for (const auto& pair : p.train)
    for (int b = 1; b < 3; ++b) {
      EXPECT_FALSE(keys(*lists[b], "assistant").count(ktl::normalize_for_split(pair.rejected)));
      EXPECT_FALSE(keys(*lists[b], "assistant").count(ktl::normalize_for_split(pair.chosen)));
    }
}

TEST(ChatSplit, SplitDirectoryRoundTripsAndRefusesALeak) {
  const fs::path dir = fs::temp_directory_path() / ("ktl_chat_split_" + std::to_string(getpid()));
  fs::remove_all(dir);
  ktl::ChatSplitConfig cfg;
  cfg.val_fraction = 0.1;
  cfg.test_fraction = 0.1;
  const auto s = ktl::split_conversations(chained_data(600), cfg);
  ktl::write_chat_split(s, dir.string(), cfg, "chained");
  ASSERT_TRUE(ktl::is_chat_split_dir(dir.string()));
  const auto back = ktl::load_chat_split(dir.string());
  EXPECT_EQ(back.train.size(), s.train.size());
  EXPECT_EQ(back.val.size(), s.val.size());
  EXPECT_EQ(back.test.size(), s.test.size());
  EXPECT_EQ(back.groups, s.groups);
  EXPECT_NE(ktl::read_file(dir / "split.json").find("\"merged\": " + std::to_string(s.merged)),
            std::string::npos);
  // A test answer copied into train (written differently) is refused.
  auto leaked = s.train;
  leaked.push_back(qa("새 질문", s.test.at(0).messages[1].content + "!!"));
  ktl::write_file_atomic(dir / "train.jsonl", ktl::conversations_to_jsonl(leaked));
  EXPECT_THROW(ktl::load_chat_split(dir.string()), std::runtime_error);
  fs::remove_all(dir);
}

TEST(ChatSplit, PreferenceSplitFilesSitBesideTheTrainingFile) {
  EXPECT_EQ(ktl::preference_split_path("out/prefs.jsonl", "val"), "out/prefs.val.jsonl");
  EXPECT_EQ(ktl::preference_split_path("prefs", "test"), "prefs.test.jsonl");
}

// The shipped chatbot pairs (../shared/data/ko), when present: the real figures hold.
TEST(ChatSplit, ChatbotQaHasNoCrossingKeys) {
  const std::string path = std::string(KTL_SOURCE_DIR) + "/../shared/data/ko/chatbot-qa.tsv";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not present";
  const auto s = ktl::load_chat_split(path);
  EXPECT_EQ(s.conversations, 11823);
  EXPECT_LT(s.groups, s.conversations);
  expect_no_key_crosses(s);
  const auto p = ktl::build_preference_split(s);
  std::set<std::string> held_out;
  for (const auto* l : {&s.val, &s.test})
    for (const auto& c : *l) held_out.insert(ktl::normalize_for_split(c.messages[1].content));
  for (const auto& pair : p.train) {
    EXPECT_FALSE(held_out.count(ktl::normalize_for_split(pair.chosen)));
    EXPECT_FALSE(held_out.count(ktl::normalize_for_split(pair.rejected)));
  }
}

}  // namespace
