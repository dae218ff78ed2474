// `ktl distill` end to end through the binary: a tiny teacher trained by `ktl train`, a draft
// distilled from it (the loss and the KL fall, the draft takes the teacher's vocabulary and
// tokenizer, loads in `ktl generate` and is compared with its teacher by `ktl eval --teacher`),
// resume, and the refusals (another teacher on resume, data tokenized with another tokenizer,
// bad flags).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/token_shard.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/cli_process.h"
#include "tests/support/korean_fixture.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using ktl::cli_process::ktl_bin;
using ktl::cli_process::run_ktl;
using ktl::cli_process::slurp;

// A fresh temp directory removed by the destructor (tiny_checkpoint.h has one too, with LibTorch).
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    std::string tmpl = (fs::temp_directory_path() / (tag + "-XXXXXX")).string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A tokenizer of `vocab` pieces trained on sentences `tag` picks, and train/val shards with it.
void make_data(const std::string& dir, int vocab, char tag) {
  fs::create_directories(dir);
  ktl::testing::write_lines(dir + "/corpus.txt", ktl::testing::korean_sentences(3000, tag));
  ktl::TokenizerTrainOptions o;
  o.input_files = {dir + "/corpus.txt"};
  o.model_prefix = dir + "/tokenizer";
  o.vocab_size = vocab;
  o.character_coverage = 0.99;
  o.input_sentence_size = 0;
  ktl::train_tokenizer(o);
  auto tok = ktl::Tokenizer::load(dir + "/tokenizer.model");
  for (const char* split : {"train", "val"}) {
    ktl::TokenShardWriter w(dir + "/" + split + ".bin", uint32_t(tok->vocab_size()));
    for (const auto& s : ktl::testing::korean_sentences(split[0] == 't' ? 800 : 100, split[0]))
      w.add_document(tok->encode(s), s.size() / 3);
    w.finish();
  }
}

std::string quoted(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += " '" + a + "'";
  return s;
}

// Every "| name X" value of the progress lines ("step 5/40 | loss 6.1 | kl 1.2 | ..."), in order.
std::vector<double> series(const std::string& log, const std::string& name) {
  std::vector<double> out;
  static const std::regex progress("\\] step [0-9]+/[0-9]+ \\| ");
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (!std::regex_search(line, progress)) continue;
    const size_t at = line.find("| " + name + " ");
    if (at != std::string::npos) out.push_back(std::stod(line.substr(at + name.size() + 3)));
  }
  return out;
}

class DistillCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(ktl_bin())) return;
    dir_ = new TempDir("ktl-distill-cli");
    const std::string d = dir_->path();
    make_data(d + "/data", 512, 's');
    std::ofstream(d + "/teacher.yaml")
        << "vocab_size: 512\nhidden_size: 64\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n"
           "intermediate_size: 128\nmax_seq_length: 64\n";
    // The draft's YAML says another vocabulary and context: the teacher's must win.
    std::ofstream(d + "/draft.yaml")
        << "vocab_size: 100\nhidden_size: 32\nnum_layers: 1\nnum_heads: 4\nnum_kv_heads: 2\n"
           "intermediate_size: 64\nmax_seq_length: 16\n";
    // A teacher with something to teach: 60 steps of `ktl train`.
    const auto r = run_ktl("train --model-config " + d + "/teacher.yaml --data " + d +
                           "/data --output-dir " + d +
                           "/teacher --max-steps 60 --batch-size 4 "
                           "--max-seq-length 32 --num-threads 1 --eval-steps 0 --save-steps 0 "
                           "--sample-steps 0 --warmup-steps 5 --learning-rate 3e-3 --bf16 false");
    teacher_ok_ = r.code == 0;
    teacher_log_ = r.out;
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "ktl binary not built";
    ASSERT_TRUE(teacher_ok_) << teacher_log_;
  }
  static std::string path(const std::string& name) { return dir_->path() + "/" + name; }
  // `ktl distill` with the tiny shapes; `extra` flags after them.
  static std::vector<std::string> args(const std::vector<std::string>& extra) {
    std::vector<std::string> a = {
        "--data",         path("data"), "--model-config",   path("draft.yaml"),
        "--batch-size",   "4",          "--max-seq-length", "32",
        "--num-threads",  "1",          "--log-steps",      "5",
        "--eval-batches", "2",          "--sample-steps",   "0",
        "--warmup-steps", "3",          "--learning-rate",  "3e-3",
        "--bf16",         "false"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  static TempDir* dir_;
  static bool teacher_ok_;
  static std::string teacher_log_;
};

TempDir* DistillCliTest::dir_ = nullptr;
bool DistillCliTest::teacher_ok_ = false;
std::string DistillCliTest::teacher_log_;

TEST_F(DistillCliTest, DistillsADraftWithTheTeachersVocabularyAndResumes) {
  const std::string teacher = path("teacher/final"), out = path("draft");
  const auto r = run_ktl(
      "distill" + quoted(args({"--teacher", teacher, "--out", out, "--max-steps", "40",
                               "--eval-steps", "20", "--save-steps", "20", "--top-k", "16"})));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("KL over the teacher's top 16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("with the teacher's vocab_size 512 and max_seq_length 64"),
            std::string::npos)
      << r.out;
  // The loss and its KL part fall as the draft learns the teacher's distribution.
  const auto loss = series(r.out, "loss"), kl = series(r.out, "kl"), ce = series(r.out, "ce");
  ASSERT_EQ(kl.size(), 8u) << r.out;
  ASSERT_EQ(loss.size(), kl.size());
  // Seeded, one thread: 3.34 -> 2.53 and 0.52 -> 0.26 when written.
  EXPECT_LT(loss.back(), 0.9 * loss.front()) << r.out;
  EXPECT_LT(kl.back(), 0.7 * kl.front()) << r.out;
  EXPECT_LT(ce.back(), ce.front()) << r.out;

  // An ordinary checkpoint with the teacher's vocabulary, context and tokenizer.
  const json cfg = json::parse(slurp(out + "/final/config.json"));
  const json tcfg = json::parse(slurp(teacher + "/config.json"));
  EXPECT_EQ(cfg["vocab_size"], tcfg["vocab_size"]);
  EXPECT_EQ(cfg["max_position_embeddings"], tcfg["max_position_embeddings"]);
  EXPECT_EQ(cfg["hidden_size"], 32);
  EXPECT_EQ(slurp(out + "/final/tokenizer.model"), slurp(teacher + "/tokenizer.model"));
  const json state = json::parse(slurp(out + "/final/trainer_state.json"));
  EXPECT_EQ(state["distill"]["teacher"], fs::canonical(teacher).string());
  EXPECT_EQ(state["distill"]["teacher_weights_sha256"].get<std::string>().size(), 64u);
  const auto gen = run_ktl("generate --model " + out +
                           "/final --prompt '안녕하세요' "
                           "--max-tokens 5 --temperature 0 --threads 1");
  EXPECT_EQ(gen.code, 0) << gen.out;
  // ktl eval --teacher: how well the draft predicts its teacher; the teacher agrees with itself.
  const std::string eval = "eval --data " + path("data") +
                           " --split val --max-batches 2 "
                           "--max-seq-length 32 --num-threads 1 --bf16 false --teacher " +
                           teacher;
  const auto ev = run_ktl(eval + " --model " + out + "/final");
  ASSERT_EQ(ev.code, 0) << ev.out;
  EXPECT_NE(ev.out.find("teacher top-1 agreement: 0."), std::string::npos) << ev.out;
  EXPECT_NE(ev.out.find("teacher acceptance (1 - TV, T = 1): 0."), std::string::npos) << ev.out;
  const auto self = run_ktl(eval + " --model " + teacher);
  ASSERT_EQ(self.code, 0) << self.out;
  EXPECT_NE(self.out.find("teacher top-1 agreement: 1.0000"), std::string::npos) << self.out;
  EXPECT_NE(self.out.find("KL(teacher || model): 0.0000"), std::string::npos) << self.out;

  // Resume: the teacher comes from the checkpoint's training_config.yaml.
  const auto resumed =
      run_ktl("distill --resume-from " + out + "/final --max-steps 50" + quoted(args({})));
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resumed from"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("step 50/50"), std::string::npos) << resumed.out;
  EXPECT_EQ(resumed.out.find("step 5/50"), std::string::npos) << "restarted from 0";

  // Another teacher (same shapes and tokenizer, other weights) is refused on resume.
  const auto init = run_ktl("init-model --model-config " + path("teacher.yaml") + " --tokenizer " +
                            teacher + " --out " + path("other-teacher") + " --seed 7");
  ASSERT_EQ(init.code, 0) << init.out;
  const auto other = run_ktl("distill --resume-from " + out + "/latest --teacher " +
                             path("other-teacher") + " --max-steps 60" + quoted(args({})));
  EXPECT_EQ(other.code, 1) << other.out;
  EXPECT_NE(other.out.find("was distilled from the teacher"), std::string::npos) << other.out;
  EXPECT_NE(other.out.find("its weights differ"), std::string::npos) << other.out;
}

TEST_F(DistillCliTest, WholeVocabularyAndAlphaZeroRun) {
  const auto r = run_ktl(
      "distill" + quoted(args({"--teacher", path("teacher/final"), "--out", path("draft-full"),
                               "--max-steps", "10", "--eval-steps", "0", "--save-steps", "0",
                               "--top-k", "0", "--alpha", "0", "--temperature", "2"})));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("0 * T^2 * KL + 1 * CE at T 2, KL over the whole vocabulary"),
            std::string::npos)
      << r.out;
  // alpha 0: the loss is the cross-entropy alone.
  const auto loss = series(r.out, "loss"), ce = series(r.out, "ce");
  ASSERT_EQ(loss.size(), 2u) << r.out;
  for (size_t i = 0; i < loss.size(); ++i) EXPECT_NEAR(loss[i], ce[i], 1e-3);
}

TEST_F(DistillCliTest, RefusesDataOfAnotherTokenizerAndBadFlags) {
  make_data(path("other-data"), 500, 'o');
  const auto r = run_ktl("distill --teacher " + path("teacher/final") + " --data " +
                         path("other-data") + " --out " + path("x") + " --num-threads 1");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("is not the teacher's tokenizer"), std::string::npos) << r.out;

  const auto no_teacher = run_ktl("distill --data " + path("data") + " --out " + path("x"));
  EXPECT_EQ(no_teacher.code, 2) << no_teacher.out;
  EXPECT_NE(no_teacher.out.find("missing --teacher"), std::string::npos) << no_teacher.out;
  const auto bad_alpha = run_ktl("distill --teacher " + path("teacher/final") + " --data " +
                                 path("data") + " --out " + path("x") + " --alpha 1.5");
  EXPECT_EQ(bad_alpha.code, 2) << bad_alpha.out;
  EXPECT_NE(bad_alpha.out.find("distill_alpha"), std::string::npos) << bad_alpha.out;
  // --config is the training YAML: a model YAML there gets a hint.
  const auto model_as_config =
      run_ktl("distill --teacher " + path("teacher/final") + " --data " + path("data") + " --out " +
              path("x") + " --config " + path("draft.yaml"));
  EXPECT_EQ(model_as_config.code, 2) << model_as_config.out;
  EXPECT_NE(model_as_config.out.find("--model-config"), std::string::npos) << model_as_config.out;
  // A plain `ktl train` does not load a teacher: a distill_teacher there is refused.
  const auto train =
      run_ktl("train --model-config " + path("teacher.yaml") + " --data " + path("data") +
              " --output-dir " + path("y") + " --distill-teacher " + path("teacher/final") +
              " --max-steps 1 --max-seq-length 32 --num-threads 1");
  EXPECT_NE(train.code, 0) << train.out;
  EXPECT_NE(train.out.find("distillation runs through `ktl distill`"), std::string::npos)
      << train.out;
}

}  // namespace
