// End-to-end: generated Korean JSONL -> prepare-data pipeline -> shards that decode back to the
// cleaned text.
#include "core/data/data_pipeline.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "core/data/token_shard.h"
#include "tests/support/data_test_util.h"
#include "tests/support/korean_fixture.h"

namespace {

using ktl::testing::TempDir;

std::vector<std::string> split_docs(const std::filesystem::path& txt) {
  std::vector<std::string> v;
  ktl::for_each_split_document(txt, [&](std::string&& d) { v.push_back(std::move(d)); });
  return v;
}

// Documents of a shard, decoded one by one (each ends with </s>).
std::vector<std::string> decode_shard(const std::filesystem::path& bin, const ktl::Tokenizer& tok) {
  auto shard = ktl::TokenShard::open(bin);
  std::vector<std::string> out;
  std::vector<int> cur;
  for (uint64_t i = 0; i < shard->size(); ++i) {
    const int id = static_cast<int>(shard->get(i));
    if (id == ktl::SpecialIds::kEos) {
      out.push_back(tok.decode(cur));
      cur.clear();
    } else {
      cur.push_back(id);
    }
  }
  EXPECT_TRUE(cur.empty()) << "shard does not end with </s>";
  return out;
}

class DataPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sents = ktl::testing::korean_sentences(6000, 5);
    std::string jsonl;
    size_t n = 0;
    for (size_t i = 0; i + 2 < sents.size(); i += 3, ++n) {
      std::string text = sents[i] + " " + sents[i + 1] + "\\n" + sents[i + 2];
      if (n % 50 == 7) text += " <b>강조</b> &amp; 기호";
      jsonl += "{\"text\": \"" + text + "\"}\n";
      if (n % 100 == 3) jsonl += "{\"text\": \"" + text + "\"}\n";  // exact duplicate
    }
    jsonl += "{\"text\": \"This document is entirely in English and should be dropped.\"}\n";
    jsonl += "{\"text\": \"짧음\"}\n";
    jsonl += "{\"text\": broken\n";
    ktl::testing::write_text(dir_.file("corpus.jsonl"), jsonl);
    n_docs_ = n;
  }

  ktl::PipelineConfig config(const std::string& out) {
    ktl::PipelineConfig c;
    c.inputs = {dir_.file("corpus.jsonl")};
    c.output_dir = dir_.path() / out;
    c.tokenizer_train.vocab_size = 1000;
    c.progress = false;
    return c;
  }

  TempDir dir_;
  size_t n_docs_ = 0;
};

TEST_F(DataPipelineTest, StagesSplitsAndShardRoundTrip) {
  const auto cfg = config("out");
  const auto st = ktl::run_data_pipeline(cfg);
  const size_t dups = (n_docs_ + 96) / 100;
  EXPECT_EQ(st.read.docs, n_docs_ + dups + 2);
  EXPECT_EQ(st.input_errors, 1u);
  EXPECT_EQ(st.dropped.at("low_hangul"), 1u);
  EXPECT_EQ(st.dropped.at("too_short"), 1u);
  EXPECT_EQ(st.exact_duplicates, dups);
  EXPECT_EQ(st.after_exact.docs, n_docs_);
  EXPECT_EQ(st.splits.at("train").docs + st.splits.at("val").docs + st.splits.at("test").docs,
            n_docs_);
  EXPECT_GT(st.splits.at("val").docs, 0u);
  EXPECT_GT(st.val_chars_per_token, 1.0);

  auto tok = ktl::Tokenizer::load((cfg.output_dir / "tokenizer.model").string());
  std::set<std::string> all;
  for (const char* s : {"train", "val", "test"}) {
    const auto docs = split_docs(cfg.output_dir / (std::string(s) + ".txt"));
    EXPECT_EQ(decode_shard(cfg.output_dir / (std::string(s) + ".bin"), *tok), docs) << s;
    const auto h = ktl::TokenShard::read_header(cfg.output_dir / (std::string(s) + ".bin"));
    EXPECT_EQ(h.n_docs, docs.size());
    EXPECT_EQ(h.n_tokens, st.splits.at(s).tokens);
    EXPECT_EQ(ktl::read_split_char_count(cfg.output_dir, s), st.splits.at(s).chars);
    for (const auto& d : docs) {
      EXPECT_TRUE(all.insert(d).second) << "document in two splits: " << d;
      EXPECT_EQ(d.find("<b>"), std::string::npos);
    }
  }
  EXPECT_EQ(all.size(), n_docs_);
  auto j = nlohmann::json::parse(ktl::testing::read_text((cfg.output_dir / "stats.json").string()));
  EXPECT_EQ(j["splits"]["val"]["tokens"].get<uint64_t>(), st.splits.at("val").tokens);
  EXPECT_EQ(j["stages"]["read"]["docs"].get<uint64_t>(), st.read.docs);
  EXPECT_EQ(j["special_ids"]["eos"].get<int>(), 3);
  for (const auto& e : std::filesystem::directory_iterator(cfg.output_dir))
    EXPECT_EQ(e.path().filename().string().find("tmp"), std::string::npos) << e.path();
}

TEST_F(DataPipelineTest, DeterministicGivenSeedAndReusesTokenizer) {
  auto a = config("a");
  a.tokenize = false;
  auto b = config("b");
  b.tokenize = false;
  auto c = config("c");
  c.tokenize = false;
  c.split.seed = 99;
  ktl::run_data_pipeline(a);
  ktl::run_data_pipeline(b);
  ktl::run_data_pipeline(c);
  const auto va = ktl::testing::read_text((a.output_dir / "val.txt").string());
  EXPECT_EQ(va, ktl::testing::read_text((b.output_dir / "val.txt").string()));
  EXPECT_NE(va, ktl::testing::read_text((c.output_dir / "val.txt").string()));
  EXPECT_FALSE(std::filesystem::exists(a.output_dir / "train.bin"));

  auto t = config("t");
  ktl::run_data_pipeline(t);
  auto r = config("r");
  r.tokenizer = t.output_dir.string();  // a directory holding tokenizer.model
  ktl::run_data_pipeline(r);
  EXPECT_EQ(ktl::testing::read_text((r.output_dir / "tokenizer.model").string()),
            ktl::testing::read_text((t.output_dir / "tokenizer.model").string()));
  EXPECT_EQ(ktl::testing::read_text((r.output_dir / "val.bin").string()),
            ktl::testing::read_text((t.output_dir / "val.bin").string()));
}

TEST_F(DataPipelineTest, ExcludedEvaluationTextsReachNoSplit) {
  auto base = config("base");
  base.tokenize = false;
  ktl::run_data_pipeline(base);
  // Hold out three documents of the corpus (one from each split where possible), respaced.
  std::vector<std::string> held;
  for (const char* s : {"train", "val", "test"}) {
    const auto docs = split_docs(base.output_dir / (std::string(s) + ".txt"));
    ASSERT_FALSE(docs.empty()) << s;
    held.push_back(docs.front());
  }
  std::string jsonl;
  for (const auto& d : held) {
    std::string respaced = d;
    for (auto& c : respaced)
      if (c == '\n') c = ' ';
    jsonl += nlohmann::json{{"text", respaced}, {"label", 1}}.dump() + "\n";
  }
  ktl::testing::write_text(dir_.file("dev.jsonl"), jsonl);

  auto cfg = config("ex");
  cfg.tokenize = false;
  cfg.exclude = {dir_.file("dev.jsonl")};
  const auto st = ktl::run_data_pipeline(cfg);
  EXPECT_EQ(st.held_out_texts, 3u);
  EXPECT_GE(st.dropped.at("held_out"), 3u);  // a held-out text's exact duplicates go too
  EXPECT_EQ(st.after_exact.docs, n_docs_ - 3);
  for (const char* s : {"train", "val", "test"})
    for (const auto& d : split_docs(cfg.output_dir / (std::string(s) + ".txt")))
      for (const auto& h : held) EXPECT_NE(d, h) << s;
  auto j = nlohmann::json::parse(ktl::testing::read_text((cfg.output_dir / "stats.json").string()));
  EXPECT_EQ(j["held_out_texts"].get<uint64_t>(), 3u);
}

TEST_F(DataPipelineTest, TinyCorpusStillGetsValAndTest) {
  ktl::testing::write_text(
      dir_.file("tiny.txt"),
      "첫 번째 문서입니다.\n두 번째 문서입니다.\n세 번째 문서입니다.\n네 번째 문서입니다.\n");
  ktl::PipelineConfig c;
  c.inputs = {dir_.file("tiny.txt")};
  c.output_dir = dir_.path() / "tiny";
  c.tokenize = false;
  c.progress = false;
  const auto st = ktl::run_data_pipeline(c);
  EXPECT_EQ(st.splits.at("val").docs, 1u);
  EXPECT_EQ(st.splits.at("test").docs, 1u);
  EXPECT_EQ(st.splits.at("train").docs, 2u);
}

TEST_F(DataPipelineTest, NothingLeftIsAClearError) {
  ktl::testing::write_text(dir_.file("english.txt"), "only english here\nand here too\n");
  ktl::PipelineConfig c;
  c.inputs = {dir_.file("english.txt")};
  c.output_dir = dir_.path() / "none";
  c.progress = false;
  try {
    ktl::run_data_pipeline(c);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no documents left"), std::string::npos);
  }
}

TEST_F(DataPipelineTest, NearDedupRemovesEditedCopies) {
  std::string text;
  const std::string base =
      "이 영화는 배우들의 연기가 훌륭하고 음악도 아름다워서 끝까지 지루하지 않게 볼 수 있었다 특히 "
      "마지막 장면이 좋았다";
  text += base + "\n" + base + " 추천\n" + base + " 강추\n";
  text +=
      "완전히 다른 내용의 문서로 경제 뉴스와 수출 통계를 다루고 있으며 반도체 이야기가 나온다\n";
  ktl::testing::write_text(dir_.file("near.txt"), text);
  ktl::PipelineConfig c;
  c.inputs = {dir_.file("near.txt")};
  c.output_dir = dir_.path() / "near";
  c.tokenize = false;
  c.progress = false;
  c.near_dedup = true;
  const auto st = ktl::run_data_pipeline(c);
  EXPECT_EQ(st.exact_duplicates, 0u);
  EXPECT_EQ(st.near_duplicates, 2u);
  EXPECT_EQ(st.after_near.docs, 2u);
}

}  // namespace

namespace {

TEST_F(DataPipelineTest, SourceCapBalancesTheTokenizerAndStatsArePerSource) {
  // A second, small source next to the big one.
  std::string small;
  for (const auto& s : ktl::testing::korean_sentences(300, 9)) small += s + "\n";
  ktl::testing::write_text(dir_.file("small.txt"), small);
  auto c = config("capped");
  c.inputs.push_back(dir_.file("small.txt"));
  c.reader.txt_docs = "line";
  c.tokenizer_source_cap_chars = 20000;
  const auto st = ktl::run_data_pipeline(c);
  ASSERT_EQ(st.sources.size(), 2u);
  const auto& big = st.sources.at("corpus.jsonl");
  const auto& little = st.sources.at("small.txt");
  // The cap stops a source after the document that crosses it; the shards keep everything.
  EXPECT_GE(big.tokenizer_chars, 20000u);
  EXPECT_LT(big.tokenizer_chars, 20000u + 2000u);
  EXPECT_GT(big.train_chars, 5 * big.tokenizer_chars);
  ASSERT_LT(little.train_chars, 20000u);  // under the cap: all of it
  EXPECT_EQ(little.tokenizer_chars, little.train_chars);
  EXPECT_EQ(big.train_docs + little.train_docs, st.splits.at("train").docs);
  // Per-source val figures add up to the split's.
  EXPECT_EQ(big.val_docs + little.val_docs, st.splits.at("val").docs);
  EXPECT_EQ(big.val_chars + little.val_chars, st.splits.at("val").chars);
  EXPECT_EQ(big.val_tokens + little.val_tokens,
            st.splits.at("val").tokens - st.splits.at("val").docs);
  const auto j = nlohmann::json::parse(ktl::pipeline_stats_json(st));
  EXPECT_EQ(j["tokenizer_source_cap_chars"], 20000);
  EXPECT_GT(j["sources"]["corpus.jsonl"]["tokenizer_share"].get<double>(), 0.0);
  EXPECT_GT(j["sources"]["corpus.jsonl"]["val_chars_per_token"].get<double>(), 1.0);
}

TEST_F(DataPipelineTest, ADirectoryInputIsOneSource) {
  // Two files under one directory count (and are capped) as one source named after it.
  const std::filesystem::path reviews = dir_.path() / "reviews";
  std::filesystem::create_directories(reviews);
  for (int f = 0; f < 2; ++f) {
    std::string text;
    for (const auto& s : ktl::testing::korean_sentences(200, 20 + f)) text += s + "\n";
    ktl::testing::write_text((reviews / ("part" + std::to_string(f) + ".txt")).string(), text);
  }
  auto c = config("dir-source");
  c.inputs = {reviews.string() + "/"};
  c.reader.txt_docs = "line";
  c.tokenize = false;
  const auto st = ktl::run_data_pipeline(c);
  ASSERT_EQ(st.sources.size(), 1u);
  EXPECT_EQ(st.sources.begin()->first, "reviews");
  EXPECT_EQ(st.sources.at("reviews").train_docs, st.splits.at("train").docs);
}

}  // namespace
