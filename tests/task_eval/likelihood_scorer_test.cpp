// The batched continuation scorer against its naive twin (one sequence at a time, a full
// log_softmax), and the sequence layout (BOS, context, continuation; left truncation).
#include "core/task_eval/likelihood_scorer.h"

#include <gtest/gtest.h>

#include "core/tokenizer/tokenizer.h"
#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

class Scorer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("ktl-scorer");
    tok_ = Tokenizer::load(testing::make_tiny_tokenizer(dir_->path() + "/tok"));
  }
  static void TearDownTestSuite() {
    tok_.reset();
    delete dir_;
  }
  static inline testing::TempDir* dir_ = nullptr;
  static inline std::shared_ptr<Tokenizer> tok_;
};

TEST_F(Scorer, BatchedSumsEqualOneSequenceAtATime) {
  torch::manual_seed(0);
  Transformer m(testing::tiny_model_config(tok_->vocab_size()));
  m->init_weights(4);
  m->eval();
  std::vector<ScoredSequence> seqs;
  const char* ctxs[] = {"나는 학교에서", "우리는 도서관에서 책을 읽고", "고양이가"};
  for (const char* c : ctxs)
    for (const char* choice : {" 밥을 먹었다.", " 노래", " 사진을 찍었다 어제"})
      seqs.push_back(mc_sequence(*tok_, c, choice, 64));
  for (int batch : {1, 3, 16}) {
    const auto got = continuation_logliks(m, seqs, batch, torch::kCPU);
    for (size_t i = 0; i < seqs.size(); ++i) {
      torch::NoGradGuard ng;
      std::vector<int64_t> ids(seqs[i].ids.begin(), seqs[i].ids.end());
      const auto lp =
          torch::log_softmax(m->forward(torch::tensor(ids).unsqueeze(0)).squeeze(0), -1);
      double want = 0;
      for (size_t t = ids.size() - seqs[i].n_cont; t < ids.size(); ++t)
        want += lp[int64_t(t) - 1][ids[t]].item<double>();
      EXPECT_NEAR(got[i], want, 1e-4) << "batch " << batch << " seq " << i;
    }
  }
}

TEST_F(Scorer, SequencesAreBosContextContinuationAndTruncateFromTheLeft) {
  const auto s = mc_sequence(*tok_, "나는 학교에서", " 책을", 64);
  const auto ctx = tok_->encode("나는 학교에서"), cont = tok_->encode(" 책을");
  ASSERT_EQ(s.ids.size(), 1 + ctx.size() + cont.size());
  EXPECT_EQ(s.ids[0], tok_->bos_id());
  EXPECT_EQ(s.n_cont, static_cast<int>(cont.size()));
  EXPECT_EQ(std::vector<int>(s.ids.end() - s.n_cont, s.ids.end()), cont);
  const auto cut = mc_sequence(*tok_, "우리는 도서관에서 책을 읽고 카페에서 커피를 마셨다", " 책을",
                               static_cast<int>(cont.size()) + 3);
  EXPECT_EQ(cut.ids.size(), cont.size() + 3);
  EXPECT_EQ(cut.ids[0], tok_->bos_id());
  EXPECT_EQ(std::vector<int>(cut.ids.end() - cut.n_cont, cut.ids.end()), cont);
}

}  // namespace
}  // namespace ktl
