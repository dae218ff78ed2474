// The data commands of the ktl binary: prepare-data, train-tokenizer, tokenize.
// Skipped when KTL_BIN (set by ctest) does not point at a built ktl.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

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

}  // namespace
