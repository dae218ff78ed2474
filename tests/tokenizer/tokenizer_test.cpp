// Trains a small SentencePiece model on generated Korean text and checks the Tokenizer API.
#include "core/tokenizer/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "tests/support/korean_fixture.h"

namespace fs = std::filesystem;

namespace {

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("ktl_tok_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    ktl::testing::write_lines((dir_ / "corpus.txt").string(), ktl::testing::korean_sentences(4000));
    ktl::TokenizerTrainOptions o;
    o.input_files = {(dir_ / "corpus.txt").string()};
    o.model_prefix = (dir_ / "tokenizer").string();
    o.vocab_size = 1200;
    ktl::train_tokenizer(o);
    tok_ = ktl::Tokenizer::load((dir_ / "tokenizer.model").string());
  }
  static void TearDownTestSuite() {
    tok_.reset();
    fs::remove_all(dir_);
  }
  static fs::path dir_;
  static std::shared_ptr<ktl::Tokenizer> tok_;
};

fs::path TokenizerTest::dir_;
std::shared_ptr<ktl::Tokenizer> TokenizerTest::tok_;

TEST_F(TokenizerTest, TrainedFilesExistAndLoadFromDirectory) {
  EXPECT_TRUE(fs::exists(dir_ / "tokenizer.vocab"));
  fs::create_directories(dir_ / "asdir");
  fs::copy_file(dir_ / "tokenizer.model", dir_ / "asdir" / "tokenizer.model",
                fs::copy_options::overwrite_existing);
  auto t = ktl::Tokenizer::load((dir_ / "asdir").string());
  EXPECT_EQ(t->vocab_size(), tok_->vocab_size());
}

TEST_F(TokenizerTest, SpecialIdsAreFixed) {
  EXPECT_EQ(tok_->id_to_piece(0), "<pad>");
  EXPECT_EQ(tok_->id_to_piece(1), "<unk>");
  EXPECT_EQ(tok_->id_to_piece(2), "<s>");
  EXPECT_EQ(tok_->id_to_piece(3), "</s>");
  EXPECT_EQ(tok_->type(1), ktl::PieceType::kUnknown);
  EXPECT_EQ(tok_->type(2), ktl::PieceType::kControl);
  EXPECT_EQ(tok_->type(3), ktl::PieceType::kControl);
  EXPECT_EQ(tok_->bos_id(), 2);
  EXPECT_EQ(tok_->eos_id(), 3);
  EXPECT_EQ(tok_->token_bytes(2), "");
  EXPECT_EQ(tok_->token_bytes(3), "");
}

TEST_F(TokenizerTest, KoreanRoundTrip) {
  for (const std::string s : {"나는 학교에서 책을 읽었다.", "다들 웃었다 ㅋㅋ 너무 슬펐어요 ㅠㅠ",
                              "가격은 12,500원이었다.\n둘째 줄  두 칸 띄움"}) {
    auto ids = tok_->encode(s);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(tok_->decode(ids), s);
  }
  // Common words are merged: far fewer tokens than UTF-8 bytes.
  const std::string s = "우리는 도서관에서 한국어를 배웠어요.";
  EXPECT_LT(tok_->encode(s).size() * 3, s.size());
}

TEST_F(TokenizerTest, RareCharactersUseByteFallbackNotUnk) {
  const std::string s = "龘 똠방각하 쀍 🙂";  // Hanja, rare Hangul syllables, emoji
  auto ids = tok_->encode(s);
  bool saw_byte = false;
  for (int id : ids) {
    EXPECT_NE(id, ktl::SpecialIds::kUnk);
    if (tok_->type(id) == ktl::PieceType::kByte) saw_byte = true;
  }
  EXPECT_TRUE(saw_byte);
  EXPECT_EQ(tok_->decode(ids), s);
}

TEST_F(TokenizerTest, PieceIdMapping) {
  auto pieces = tok_->encode_pieces("친구가 카페에서 커피를 마셨습니다.");
  auto ids = tok_->encode("친구가 카페에서 커피를 마셨습니다.");
  ASSERT_EQ(pieces.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(tok_->id_to_piece(ids[i]), pieces[i]);
    EXPECT_EQ(tok_->piece_to_id(pieces[i]), ids[i]);
  }
  EXPECT_EQ(tok_->piece_to_id("이런조각은없다xyz"), ktl::SpecialIds::kUnk);
  EXPECT_EQ(tok_->piece_to_id("<0xEB>"), tok_->piece_to_id("<0xEB>"));
  EXPECT_EQ(tok_->type(tok_->piece_to_id("<0xEB>")), ktl::PieceType::kByte);
  EXPECT_EQ(tok_->token_bytes(tok_->piece_to_id("<0xEB>")), std::string(1, '\xEB'));
  EXPECT_THROW(tok_->id_to_piece(tok_->vocab_size()), std::out_of_range);
}

TEST_F(TokenizerTest, TokenBytesConcatenateToDecode) {
  for (const std::string s :
       {"할머니께서 시장에서 김치찌개를 끓였습니다. 龘!", " 앞 공백과\n줄바꿈"}) {
    auto ids = tok_->encode(s);
    std::string cat;
    for (int id : ids) cat += tok_->token_bytes(id);
    ASSERT_FALSE(cat.empty());
    ASSERT_EQ(cat[0], ' ');  // the dummy prefix
    EXPECT_EQ(cat.substr(1), tok_->decode(ids));
  }
}

TEST_F(TokenizerTest, FromBytesMatchesLoad) {
  auto t = ktl::Tokenizer::from_bytes(tok_->model_bytes());
  EXPECT_EQ(t->encode("동생이 공원에서 축구를 했어요."),
            tok_->encode("동생이 공원에서 축구를 했어요."));
  EXPECT_THROW(ktl::Tokenizer::from_bytes("not a model"), std::runtime_error);
  EXPECT_THROW(ktl::Tokenizer::load((dir_ / "missing.model").string()), std::runtime_error);
}

TEST_F(TokenizerTest, DecodeRejectsOutOfRangeIds) {
  EXPECT_THROW(tok_->decode({5, tok_->vocab_size() + 10}), std::runtime_error);
}

TEST_F(TokenizerTest, ConcurrentEncodeDecodeAgree) {
  const auto sents = ktl::testing::korean_sentences(200, 99);
  std::vector<std::vector<int>> expect;
  for (const auto& s : sents) expect.push_back(tok_->encode(s));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t)
    pool.emplace_back([&] {
      for (size_t i = 0; i < sents.size(); ++i) {
        if (tok_->encode(sents[i]) != expect[i]) ++mismatches;
        if (tok_->decode(expect[i]) != sents[i]) ++mismatches;
      }
    });
  for (auto& th : pool) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(TokenizerTrain, RejectsBadOptions) {
  ktl::TokenizerTrainOptions o;
  EXPECT_THROW(ktl::train_tokenizer(o), std::runtime_error);
  o.input_files = {"/nonexistent/corpus.txt"};
  o.model_prefix = "/tmp/x";
  EXPECT_THROW(ktl::train_tokenizer(o), std::runtime_error);
}

}  // namespace
