// SentencePiece and LibTorch in one process: this binary links torch and must not crash
// (the protobuf clash described in core/tokenizer/tokenizer.h).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>

#include "core/tokenizer/tokenizer.h"
#include "tests/support/korean_fixture.h"

namespace fs = std::filesystem;

TEST(TokenizerWithTorch, TrainEncodeAndTensorOpInOneProcess) {
  auto a = torch::ones({4, 4});  // [4, 4]
  fs::path dir = fs::temp_directory_path() / ("ktl_tok_torch_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  ktl::testing::write_lines((dir / "c.txt").string(), ktl::testing::korean_sentences(1500, 3));
  ktl::TokenizerTrainOptions o;
  o.input_files = {(dir / "c.txt").string()};
  o.model_prefix = (dir / "tokenizer").string();
  o.vocab_size = 800;
  ktl::train_tokenizer(o);
  auto tok = ktl::Tokenizer::load((dir / "tokenizer.model").string());
  auto ids = tok->encode("고양이가 공원에서 사진을 찍었다.");
  auto t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()));  // [n]
  auto b = torch::matmul(a, a);                                          // [4, 4]
  EXPECT_EQ(b[0][0].item<float>(), 4.0f);
  EXPECT_EQ(t.size(0), static_cast<int64_t>(ids.size()));
  std::vector<int> back(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.size(0));
  EXPECT_EQ(tok->decode(back), "고양이가 공원에서 사진을 찍었다.");
  fs::remove_all(dir);
}
