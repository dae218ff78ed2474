// Speculative decoding from the command line: `ktl generate` with a draft model or prompt
// lookup prints the same greedy tokens as without; a draft with another tokenizer is refused;
// `ktl bench --prompts` compares plain and speculative decoding and reports acceptance.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/cli_process.h"
#include "tests/support/tiny_checkpoint.h"

namespace {

using ktl::cli_process::CliRun;
using ktl::cli_process::json_lines;

CliRun run(const std::string& args) {
  return ktl::cli_process::run_ktl(args);
}

std::vector<int> generated_ids(const std::string& args) {
  const CliRun r = run(args);
  EXPECT_EQ(r.code, 0) << r.out;
  const auto lines = json_lines(r.out);
  if (lines.empty()) return {};
  return lines.back().at("ids").get<std::vector<int>>();
}

TEST(SpeculativeCli, GenerateGivesTheSameGreedyTokens) {
  ktl::testing::TempDir d;
  const auto tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  ktl::testing::make_tiny_checkpoint(d / "ck", tok, 3);
  ktl::testing::make_tiny_checkpoint(d / "draft", tok, 4);
  const std::string gen = "generate --model " + d / "ck" +
                          " --prompt '나는 학교에서 나는 학교에서' --max-tokens 24 --temperature 0 "
                          "--ignore-eos --json --threads 1 --kv-cache-mb 8";
  const auto plain = generated_ids(gen);
  ASSERT_EQ(plain.size(), 24u);
  EXPECT_EQ(generated_ids(gen + " --draft-model " + d / "draft"), plain);  // auto
  EXPECT_EQ(generated_ids(gen + " --draft-model " + d / "draft" + " --speculative 3"), plain);
  // The draft's precision changes how often it is right, never the output.
  EXPECT_EQ(generated_ids(gen + " --draft-model " + d / "draft" + " --draft-dtype fp32"), plain);
  EXPECT_EQ(generated_ids(gen + " --prompt-lookup 2"), plain);
  EXPECT_EQ(generated_ids(gen + " --draft-model " + d / "draft" + " --speculative off"), plain);
}

TEST(SpeculativeCli, RefusesADraftWithAnotherTokenizerAndFlagsWithoutASource) {
  ktl::testing::TempDir d;
  const auto tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  const auto other = ktl::testing::make_tiny_tokenizer(d / "tok2", 600);
  ktl::testing::make_tiny_checkpoint(d / "ck", tok, 3);
  ktl::testing::make_tiny_checkpoint(d / "foreign", other, 4);
  const std::string gen = "generate --model " + d / "ck" +
                          " --prompt '나는' --max-tokens 4 "
                          "--threads 1 --kv-cache-mb 8";
  CliRun r = run(gen + " --draft-model " + d / "foreign");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("another tokenizer"), std::string::npos) << r.out;
  r = run(gen + " --speculative 4");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--draft-model"), std::string::npos) << r.out;
  r = run(gen + " --draft-model " + d / "ck" + " --draft-dtype int4");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--draft-dtype"), std::string::npos) << r.out;
  r = run(gen + " --prompt-lookup 2 --speculative sometimes");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("off, auto or a number"), std::string::npos) << r.out;
}

TEST(SpeculativeCli, BenchPromptsComparesPlainAndSpeculative) {
  ktl::testing::TempDir d;
  const auto tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  ktl::testing::make_tiny_checkpoint(d / "ck", tok, 3);
  ktl::testing::write_lines(
      d / "prompts.txt", {"나는 학교에서", "오늘 날씨가 좋다. 오늘 날씨가", "", "영화가 재미있다"});
  const CliRun r = run("bench --model " + d / "ck" + " --prompts " + d / "prompts.txt" +
                       " --prompt-lookup 2 --speculative 3 --streams 1,2 --gen-tokens 12 "
                       "--threads 1 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto runs = json_lines(r.out);
  ASSERT_EQ(runs.size(), 2u) << r.out;
  for (const auto& j : runs) {
    SCOPED_TRACE(j.dump());
    EXPECT_EQ(j["prompts"], 3);  // the empty line is skipped
    EXPECT_EQ(j["identical_outputs"], j["compared_outputs"]);
    EXPECT_GT(j["plain_decode_tok_s"].get<double>(), 0);
    EXPECT_GT(j["spec_decode_tok_s"].get<double>(), 0);
    EXPECT_GE(j["acceptance_rate"].get<double>(), 0);
    EXPECT_LE(j["acceptance_rate"].get<double>(), 1);
  }
  EXPECT_EQ(run("bench --model " + d / "ck" + " --prompts " + d / "prompts.txt").code, 2);
}

}  // namespace
