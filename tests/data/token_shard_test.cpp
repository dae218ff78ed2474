#include "core/data/token_shard.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/data_test_util.h"

namespace {

using ktl::testing::TempDir;

TEST(TokenShard, HeaderAndRoundTripUint16) {
  TempDir d;
  const auto path = d.path() / "train.bin";
  {
    ktl::TokenShardWriter w(path, 8000);
    w.add_document({5, 6, 7999}, 10);
    w.add_document({}, 0);
    w.add_document({42}, 3);
    EXPECT_FALSE(std::filesystem::exists(path));  // only the temporary exists before finish()
    w.finish();
  }
  const std::string raw = ktl::testing::read_text(path.string());
  ASSERT_GE(raw.size(), 64u);
  EXPECT_EQ(raw.substr(0, 8), "KTLSHARD");
  auto s = ktl::TokenShard::open(path);
  EXPECT_EQ(s->header().token_bytes, 2u);
  EXPECT_EQ(s->header().n_docs, 3u);
  EXPECT_EQ(s->header().n_chars, 13u);
  EXPECT_EQ(s->header().vocab_size, 8000u);
  ASSERT_EQ(s->size(), 7u);
  ASSERT_NE(s->data_u16(), nullptr);
  const std::vector<uint32_t> expect = {5, 6, 7999, 3, 3, 42, 3};
  for (size_t i = 0; i < expect.size(); ++i) EXPECT_EQ(s->get(i), expect[i]);
  std::vector<int64_t> buf(3);
  s->copy_to(1, 3, buf.data());
  EXPECT_EQ(buf, (std::vector<int64_t>{6, 7999, 3}));
  EXPECT_THROW(s->copy_to(5, 3, buf.data()), std::out_of_range);
  EXPECT_EQ(raw.size(), 64u + 7 * 2);
  EXPECT_EQ(ktl::read_split_char_count(d.path(), "train"), 13u);
}

TEST(TokenShard, WideVocabUsesUint32) {
  TempDir d;
  ktl::TokenShardWriter w(d.path() / "big.bin", 100000);
  w.add_document({70000, 1}, 2);
  w.finish();
  auto s = ktl::TokenShard::open(d.path() / "big.bin");
  EXPECT_EQ(s->header().token_bytes, 4u);
  ASSERT_NE(s->data_u32(), nullptr);
  EXPECT_EQ(s->get(0), 70000u);
  EXPECT_EQ(s->get(2), 3u);
}

TEST(TokenShard, RejectsOutOfVocabIdsAndCorruptFiles) {
  TempDir d;
  {
    ktl::TokenShardWriter w(d.path() / "x.bin", 100);
    EXPECT_THROW(w.add_document({100}, 1), std::runtime_error);
  }  // abandoned writer leaves nothing behind
  EXPECT_TRUE(std::filesystem::is_empty(d.path()));
  ktl::testing::write_text(d.file("bad.bin"), std::string(64, 'x'));
  EXPECT_THROW(ktl::TokenShard::open(d.path() / "bad.bin"), std::runtime_error);
  ktl::TokenShardWriter w(d.path() / "cut.bin", 100);
  w.add_document({1, 2, 3}, 3);
  w.finish();
  std::string raw = ktl::testing::read_text(d.file("cut.bin"));
  ktl::testing::write_text(d.file("cut.bin"), raw.substr(0, raw.size() - 2));
  EXPECT_THROW(ktl::TokenShard::open(d.path() / "cut.bin"), std::runtime_error);
}

// Found by tests/fuzz (token_shard): n_tokens = 2^63 + 5 with 4-byte tokens wrapped the expected
// size to 64 + 20 bytes, so a 5-token file was accepted as 2^63 tokens and read out of bounds.
TEST(TokenShard, RejectsTokenCountsThatWrapTheSize) {
  TempDir d;
  {
    ktl::TokenShardWriter w(d.path() / "wide.bin", 100000);  // 4-byte tokens
    w.add_document({70000, 4, 99999, 5}, 4);                 // 5 tokens with </s>
    w.finish();
  }
  std::string raw = ktl::testing::read_text(d.file("wide.bin"));
  ASSERT_EQ(raw.size(), 64u + 20u);
  const uint64_t n = (uint64_t(1) << 63) + 5;
  for (int i = 0; i < 8; ++i) raw[16 + i] = char(n >> (8 * i));
  ktl::testing::write_text(d.file("wide.bin"), raw);
  try {
    ktl::TokenShard::open(d.path() / "wide.bin");
    FAIL() << "accepted a shard claiming 2^63 tokens";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("does not match its header"), std::string::npos)
        << e.what();
  }
}

}  // namespace

namespace {

// The header's checksum is the SHA-256 prefix of the tokens: a token changed on disk (even to
// another valid id) fails verify(), naming the file; a shard from before checksums passes.
TEST(TokenShard, ChecksumCatchesAChangedTokenAndOldShardsPass) {
  TempDir d;
  const auto path = d.path() / "val.bin";
  {
    ktl::TokenShardWriter w(path, 8000);
    w.add_document({5, 6, 7, 8}, 4);
    w.finish();
  }
  auto s = ktl::TokenShard::open(path);
  EXPECT_TRUE(s->header().has_checksum());
  EXPECT_EQ(s->verify(), "");
  std::string raw = ktl::testing::read_text(path.string());
  raw[64] = 9;  // token 0: 5 -> 9, still inside the vocabulary
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << raw; }
  s = ktl::TokenShard::open(path);
  EXPECT_NE(s->verify().find(path.string()), std::string::npos);
  EXPECT_NE(s->verify().find("checksum mismatch"), std::string::npos);
  for (int i = 48; i < 64; ++i) raw[i] = 0;  // as written before checksums: nothing to check
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << raw; }
  s = ktl::TokenShard::open(path);
  EXPECT_FALSE(s->header().has_checksum());
  EXPECT_EQ(s->verify(), "");
}

}  // namespace
