// The data commands of the ktl binary: prepare-data, train-tokenizer, tokenize, chat-data.
// Skipped when KTL_BIN (set by ctest) does not point at a built ktl.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/base/file_util.h"
#include "core/data/chat_split.h"

#include "tests/support/data_test_util.h"
#include "tests/support/korean_fixture.h"

namespace {

struct Result {
  int code;
  std::string out;
};

Result run(const std::string& args) {
  const char* bin = std::getenv("KTL_BIN");
  std::string cmd = std::string(bin) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class DataCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("KTL_BIN");
    if (!bin || !std::filesystem::exists(bin)) GTEST_SKIP() << "KTL_BIN not set or not built";
  }
  ktl::testing::TempDir dir_;
};

TEST_F(DataCli, PrepareTrainTokenizeAndErrors) {
  ktl::testing::write_lines(dir_.file("c.txt"), ktl::testing::korean_sentences(3000, 9));
  const std::string data = dir_.file("data");
  auto r = run("prepare-data --input " + dir_.file("c.txt") + " --output " + data +
               " --vocab-size 900 --quiet");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("val chars/token"), std::string::npos) << r.out;
  for (const char* f :
       {"train.bin", "val.bin", "test.bin", "tokenizer.model", "stats.json", "val.txt"})
    EXPECT_TRUE(std::filesystem::exists(data + "/" + f)) << f;

  r = run("tokenize --model " + data + " --text '친구가 카페에서 커피를 마셨습니다.' --pieces");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("▁"), std::string::npos) << r.out;
  r = run("tokenize --model " + data + "/tokenizer.model --file " + data + "/val.txt --stats");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("chars_per_token "), std::string::npos) << r.out;

  r = run("train-tokenizer --input " + dir_.file("c.txt") + " --vocab-size 700 --output " +
          dir_.file("tok"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir_.file("tok/tokenizer.model")));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("tok/tokenizer.vocab")));

  r = run("prepare-data --output " + data);
  EXPECT_EQ(r.code, 2) << r.out;  // no input
  r = run("prepare-data --input " + dir_.file("c.txt") + " --output " + data + " --bogus 1");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run("prepare-data --input " + dir_.file("missing.txt") + " --output " + data);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("missing.txt"), std::string::npos) << r.out;
  r = run("tokenize --model " + dir_.file("nope") + " --text x");
  EXPECT_EQ(r.code, 1) << r.out;
}

// chat-data writes the one split (no normalised prompt or answer in two files) and builds
// training pairs from train conversations only, held-out pairs from their own split.
TEST_F(DataCli, ChatDataWritesOneSplitAndPreferencesPerSplit) {
  {
    std::ofstream f(dir_.file("qa.tsv"));
    f << "question\tanswer\tlabel\n";
    // Prompts repeat every 300 rows, answers every 200 (written with other punctuation), so
    // rows chain into groups that must stay together.
    for (int i = 0; i < 600; ++i)
      f << "질문 " << i % 300 << (i % 2 ? "?" : "") << "\t답 " << (i * 7) % 200
        << (i % 3 ? "." : "!") << "\t0\n";
  }
  const std::string split = dir_.file("split"), prefs = dir_.file("prefs.jsonl");
  auto r = run("chat-data --input " + dir_.file("qa.tsv") + " --split-out " + split +
               " --build-prefs " + prefs + " --val-fraction 0.1 --test-fraction 0.1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("qa.tsv: tsv, 600 conversations"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("600 conversations in 100 groups (500 merged"), std::string::npos) << r.out;
  const auto s = ktl::load_chat_split(split);  // throws if a key crosses the files
  EXPECT_EQ(s.train.size() + s.val.size() + s.test.size(), 600u);
  EXPECT_TRUE(ktl::crossing_split_keys(s).empty());
  const auto p = ktl::read_preference_split(prefs);
  EXPECT_EQ(p.train.size(), s.train.size());
  const std::vector<ktl::ChatConversation>* lists[] = {&s.train, &s.val, &s.test};
  const std::vector<ktl::PreferencePair>* pairs[] = {&p.train, &p.val, &p.test};
  for (int b = 0; b < 3; ++b) {
    std::set<std::string> answers;
    for (const auto& c : *lists[b]) answers.insert(c.messages.back().content);
    for (const auto& pair : *pairs[b]) {
      EXPECT_TRUE(answers.count(pair.chosen)) << pair.chosen;
      EXPECT_TRUE(answers.count(pair.rejected)) << pair.rejected;
    }
  }
  // The same split from the unsplit file in another command's hands: same counts.
  r = run("chat-data --input " + split);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("train " + std::to_string(s.train.size()) + " / val " +
                       std::to_string(s.val.size())),
            std::string::npos)
      << r.out;

  // Other formats by content, bad records skipped and counted with their lines.
  {
    std::ofstream f(dir_.file("chat.jsonl"));
    f << R"({"instruction":"인사해","output":"안녕하세요"})" << "\n{oops\n"
      << R"({"instruction":"또","input":"해","output":"네"})" << "\n";
  }
  r = run("chat-data --input " + dir_.file("chat.jsonl"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("chat.jsonl: alpaca, 2 conversations"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 bad record skipped"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chat.jsonl:2: invalid JSON"), std::string::npos) << r.out;
  r = run("chat-data --input " + dir_.file("chat.jsonl") + " --format sharegpt");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("no usable conversations"), std::string::npos) << r.out;
  r = run("chat-data --input " + dir_.file("chat.jsonl") + " --format csv");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run("chat-data --input " + dir_.file("chat.jsonl") + " --val-fraction 0.6 --test-fraction 0.5");
  EXPECT_EQ(r.code, 2) << r.out;
}

}  // namespace
