// HeldOutTexts: which evaluation texts a training document may not equal.
#include "core/data/held_out_texts.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "tests/support/data_test_util.h"

namespace {

using ktl::testing::TempDir;

TEST(HeldOutTexts, JsonlGivesEveryStringIncludingArraysAndMatchesAfterCleaning) {
  TempDir dir;
  ktl::testing::write_text(dir.file("dev.jsonl"),
                           "{\"text\": \"70년대로 돌아간 느낌이다.\", \"label\": 0}\n"
                           "\n"
                           "{\"premise\": \"그는 집에 갔다.\", \"hypothesis\": \"그는 밖에 있다.\"}\n"
                           "{\"context\": \"문맥입니다\", \"choices\": [\" 하나\", \" 둘째\"], "
                           "\"gold\": 1}\n");
  ktl::HeldOutTexts h;
  EXPECT_EQ(h.add_file(dir.file("dev.jsonl")), 6u);  // text, premise, hypothesis, context, 2 choices
  const ktl::TextCleaner cleaner;
  auto cleaned = [&](const char* s) { return cleaner.clean(s).text; };
  EXPECT_TRUE(h.contains(cleaned("70년대로 돌아간 느낌이다.")));
  EXPECT_TRUE(h.contains(cleaned("70년대로  돌아간느낌이다.")));  // spacing differs
  EXPECT_TRUE(h.contains(cleaned("그는 밖에 있다.")));
  EXPECT_TRUE(h.contains(cleaned("둘째")));
  EXPECT_FALSE(h.contains(cleaned("70년대로 돌아간 느낌이다. 재밌다")));  // whole documents only
  EXPECT_FALSE(h.contains(cleaned("다른 리뷰")));
}

TEST(HeldOutTexts, TextFilesGiveALineEachAndBadJsonIsRefused) {
  TempDir dir;
  ktl::testing::write_text(dir.file("s.txt"), "첫 문장이다.\n둘째 문장이다.\n");
  ktl::HeldOutTexts h;
  EXPECT_EQ(h.add_file(dir.file("s.txt")), 2u);
  EXPECT_TRUE(h.contains("둘째 문장이다."));
  ktl::testing::write_text(dir.file("bad.jsonl"), "{\"text\": \"좋다\"}\n{\"text\": broken\n");
  try {
    h.add_file(dir.file("bad.jsonl"));
    FAIL() << "a broken line must refuse the file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(h.add_file(dir.file("missing.jsonl")), std::runtime_error);
}

}  // namespace
