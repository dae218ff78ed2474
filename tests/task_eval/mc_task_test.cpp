// Multiple-choice tasks: reading the built-in formats and any {context, choices, gold} JSONL,
// few-shot contexts, and acc / acc_norm against a hand-computed example.
#include "core/task_eval/mc_task.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace ktl {
namespace {

std::string write(const std::string& name, const std::string& text) {
  const auto p = std::filesystem::temp_directory_path() / (name + std::to_string(getpid()));
  std::ofstream(p) << text;
  return p.string();
}

TEST(McTask, ScoresByHandComputedSumsAndCharacterNormalisation) {
  McTask t;
  t.name = "mc";
  // Example 0: " 예" (2 chars) -3.0 vs " 아니요요" (5 chars) -6.0: acc picks 0, acc_norm picks 1
  // (-1.5 < -1.2). Gold is 1: acc 0, acc_norm 1.
  t.examples.push_back({"질문?", {" 예", " 아니요요"}, 1});
  // Example 1: three choices, the middle one best both ways; gold 1: right in both.
  t.examples.push_back({"다음:", {" 가", " 나", " 다"}, 1});
  const McScore s = score_mc(t, {{-3.0, -6.0}, {-4.0, -1.0, -2.0}}, 0);
  EXPECT_EQ(s.n, 2);
  EXPECT_DOUBLE_EQ(s.acc, 0.5);
  EXPECT_DOUBLE_EQ(s.acc_norm, 1.0);
  EXPECT_THROW(score_mc(t, {{-1.0}}, 0), std::invalid_argument);
}

TEST(McTask, ReadsTheBuiltInFormatsAndNamesBadRows) {
  const auto nsmc = write("nsmc", R"({"text": "재밌다", "label": 1})"
                                  "\n"
                                  R"({"text": "별로", "label": 0})"
                                  "\n");
  McTask a = load_mc_task("nsmc-sentiment", nsmc);
  ASSERT_EQ(a.examples.size(), 2u);
  EXPECT_EQ(a.examples[0].context, "재밌다 한마디로");
  EXPECT_EQ(a.examples[0].choices, (std::vector<std::string>{" 진짜 재미없다", " 진짜 재밌다"}));
  EXPECT_EQ(a.examples[0].gold, 1);
  EXPECT_EQ(load_mc_task("nsmc-sentiment", nsmc, 1).examples.size(), 1u);
  const auto nli = write(
      "nli", R"({"premise": "비가 온다.", "hypothesis": "날씨가 맑다.", "label": "contradiction"})"
             "\n");
  McTask b = load_mc_task("kornli", nli);
  EXPECT_EQ(b.examples[0].gold, 2);
  EXPECT_EQ(b.examples[0].context, "비가 온다, 맞죠?");
  EXPECT_EQ(b.examples[0].choices,
            (std::vector<std::string>{" 네, 날씨가 맑다.", " 그리고, 날씨가 맑다.",
                                      " 아니요, 날씨가 맑다."}));
  const auto mc = write("mc", R"({"context": "1+1=", "choices": ["2", "3"], "gold": 0})"
                              "\n\n");
  EXPECT_EQ(load_mc_task("mc", mc).examples[0].choices[1], "3");
  const auto bad = write("bad", R"({"context": "x", "choices": ["a", "b"], "gold": 0})"
                                "\n"
                                R"({"context": "x", "choices": ["a"], "gold": 0})"
                                "\n");
  try {
    load_mc_task("mc", bad);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(":2: "), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_mc_task("kobest", mc), std::invalid_argument);
  EXPECT_THROW(load_mc_task("mc", "/nonexistent.jsonl"), std::runtime_error);
  for (const auto& f : {nsmc, nli, mc, bad}) std::filesystem::remove(f);
}

TEST(McTask, FewShotContextsNeverShowTheScoredExampleAndAreSeeded) {
  McTask t;
  t.name = "mc";
  for (int i = 0; i < 6; ++i)
    t.examples.push_back({"Q" + std::to_string(i) + ":", {" a", " b"}, i % 2});
  EXPECT_EQ(few_shot_context(t, 3, 0, 1), "Q3:");
  const std::string ctx = few_shot_context(t, 3, 3, 1);
  EXPECT_EQ(ctx, few_shot_context(t, 3, 3, 1));
  EXPECT_EQ(ctx.find("Q3:"), ctx.size() - 3);              // only at the end
  EXPECT_EQ(std::count(ctx.begin(), ctx.end(), '\n'), 6);  // 3 shots, each then a blank line
  // Each shot is an example's context followed by its gold answer (even ids: " a", odd: " b").
  for (size_t at = 0; at + 3 < ctx.size(); at = ctx.find("\n\n", at) + 2) {
    const int k = ctx[at + 1] - '0';
    EXPECT_EQ(ctx.substr(at, 5), "Q" + std::to_string(k) + ":" + (k % 2 ? " b" : " a")) << ctx;
  }
}

}  // namespace
}  // namespace ktl
