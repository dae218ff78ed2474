// LoRA training through the binary on a tiny model (`ktl train`, `ktl sft`, `ktl dpo` with
// --lora-rank), its adapter-only checkpoints, `ktl merge-lora` and the refusals: only the
// adapter changes (the base's tensors are bit-identical after training), the loss falls on an
// overfit batch, a SIGKILLed run resumes to the uninterrupted run's adapter bit for bit (fp32,
// one thread), merged weights give the unmerged model's logits, another base is refused, and
// DPO's reference is the base (adapter off: its loss at step 0 is log 2).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/adapters/lora_checkpoint.h"
#include "core/data/token_shard.h"
#include "core/model/checkpoint.h"
#include "core/safetensors/safetensors.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/cli_process.h"
#include "tests/support/korean_fixture.h"
#include "tests/support/safetensors_diff.h"
#include "tests/support/tiny_checkpoint.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using ktl::cli_process::ktl_bin;
using ktl::cli_process::slurp;
using ktl::cli_process::spawn;
using ktl::cli_process::wait_exit;
using ktl::cli_process::wait_for_text;

// The loss of "step N/M | loss X" in a training log (NaN when absent).
double logged_loss(const std::string& text, int step, int steps) {
  const std::string key = "step " + std::to_string(step) + "/" + std::to_string(steps) + " | loss ";
  const size_t at = text.find(key);
  return at == std::string::npos ? NAN : std::stod(text.substr(at + key.size()));
}

class LoraCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(ktl_bin())) return;
    torch::set_num_threads(1);
    dir_ = new ktl::testing::TempDir("ktl-lora-cli");
    const std::string d = dir_->path();
    ktl::testing::write_lines(d + "/corpus.txt", ktl::testing::korean_sentences(3000));
    ktl::TokenizerTrainOptions o;  // reserves the chat markers
    o.input_files = {d + "/corpus.txt"};
    o.model_prefix = d + "/data/tokenizer";
    o.vocab_size = 512;
    o.character_coverage = 0.99;
    o.input_sentence_size = 0;
    fs::create_directories(d + "/data");
    ktl::train_tokenizer(o);
    auto tok = ktl::Tokenizer::load(d + "/data/tokenizer.model");
    for (const char* split : {"train", "val"}) {
      ktl::TokenShardWriter w(d + "/data/" + split + ".bin", uint32_t(tok->vocab_size()));
      for (const auto& s : ktl::testing::korean_sentences(split[0] == 't' ? 800 : 100, split[0]))
        w.add_document(tok->encode(s), s.size() / 3);
      w.finish();
    }
    std::ofstream(d + "/model.yaml")
        << "vocab_size: 512\nhidden_size: 32\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n"
           "intermediate_size: 64\nmax_seq_length: 64\n";
    for (const char* name : {"base", "other"}) {
      const std::string seed = name[0] == 'b' ? "1" : "7";
      ASSERT_EQ(
          wait_exit(spawn({"init-model", "--model-config", d + "/model.yaml", "--tokenizer",
                           d + "/data/tokenizer.model", "--out", d + "/" + name, "--seed", seed},
                          d + "/init.log")),
          0)
          << slurp(d + "/init.log");
    }
    const auto q = ktl::testing::korean_sentences(80, 'q'),
               a = ktl::testing::korean_sentences(80, 'a');
    auto words = [](const std::string& s, int n) {  // the first n words (whole characters)
      size_t cut = 0;
      for (int k = 0; k < n && cut != std::string::npos; ++k) cut = s.find(' ', cut + 1);
      return s.substr(0, cut);
    };
    std::ofstream chat(d + "/chat.tsv");
    chat << "question\tanswer\n";
    for (size_t i = 0; i < q.size(); ++i) chat << words(q[i], 4) << "\t" << words(a[i], 6) << "\n";
    chat.close();
    std::ofstream prefs(d + "/prefs.jsonl");
    for (size_t i = 0; i < 40; ++i)
      prefs << json{{"prompt", "질문 " + std::to_string(i)},
                    {"chosen", words(a[i], 4)},
                    {"rejected", words(q[(i * 7 + 3) % 80], 2)}}
                   .dump()
            << "\n";
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "ktl binary not built";
    torch::set_num_threads(1);
  }
  static std::string path(const std::string& sub) { return dir_->path() + "/" + sub; }

  // `ktl train` with LoRA on the base: one thread, fp32, so runs are deterministic.
  static std::vector<std::string> lora_train(const std::string& out, const std::string& steps,
                                             const std::string& base = "base") {
    return {"train",      "--init-from",
            path(base),   "--data",
            path("data"), "--output-dir",
            out,          "--lora-rank",
            "4",          "--lora-alpha",
            "8",          "--lora-targets",
            "all",        "--max-steps",
            steps,        "--batch-size",
            "2",          "--max-seq-length",
            "32",         "--num-threads",
            "1",          "--bf16",
            "false",      "--learning-rate",
            "1e-2",       "--min-learning-rate",
            "1e-3",       "--warmup-steps",
            "2",          "--eval-batches",
            "2",          "--sample-steps",
            "0",          "--log-steps",
            "1",          "--keep-last-checkpoints",
            "2"};
  }
  // The overfit run several tests read (made once): 40 steps on one fixed batch.
  static std::string overfit_run() {
    static std::string out;
    if (out.empty()) {
      out = path("overfit");
      auto args = lora_train(out, "40");
      for (const char* a : {"--overfit-batches", "1", "--lora-dropout", "0", "--save-steps", "20",
                            "--eval-steps", "20"})
        args.push_back(a);
      EXPECT_EQ(wait_exit(spawn(args, path("overfit.log"))), 0) << slurp(path("overfit.log"));
    }
    return out;
  }
  static ktl::testing::TempDir* dir_;
};

ktl::testing::TempDir* LoraCliTest::dir_ = nullptr;

TEST_F(LoraCliTest, OverfitRunTrainsOnlyTheAdapterAndWritesAPeftCheckpoint) {
  const std::string out = overfit_run(), text = slurp(path("overfit.log"));
  EXPECT_NE(text.find("LoRA: r 4, alpha 8 (scale 2)"), std::string::npos) << text;
  const double first = logged_loss(text, 1, 40), last = logged_loss(text, 40, 40);
  ASSERT_TRUE(std::isfinite(first) && std::isfinite(last)) << text;
  // A random tiny base bounds the logits (frozen, small embeddings), so the fall is modest.
  EXPECT_LT(last, first - 0.25) << text;  // the adapter alone fits the batch

  const std::string fin = out + "/final";
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "lora_base.json",
                        "optimizer.safetensors", "trainer_state.json", "training_config.yaml",
                        "meta.json", "config.json", "tokenizer.model"})
    EXPECT_TRUE(fs::exists(fin + "/" + f)) << f;
  EXPECT_FALSE(fs::exists(fin + "/model.safetensors"));  // no copy of the base
  const json base_ref = json::parse(slurp(fin + "/lora_base.json"));
  EXPECT_EQ(base_ref["base"], fs::absolute(path("base")).string());
  EXPECT_EQ(base_ref["weights_sha256"], ktl::read_checkpoint_meta(path("base")).weights_sha256);
  const json cfg = json::parse(slurp(fin + "/adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0);
  EXPECT_EQ(cfg["target_modules"].size(), 7u);
  // The optimizer holds the adapter's moments alone.
  auto opt = ktl::SafetensorsFile::open(fin + "/optimizer.safetensors");
  int moments = 0;
  for (const auto& t : opt.tensors()) {
    if (t.name.rfind("exp_avg", 0) != 0) continue;
    ++moments;
    EXPECT_NE(t.name.find(".lora_"), std::string::npos) << t.name;
  }
  EXPECT_EQ(moments, 2 * 2 * 7 * 2);  // exp_avg + exp_avg_sq of A and B, 7 targets, 2 layers
  EXPECT_EQ(wait_exit(spawn({"doctor", "--data-dir", fin}, path("doctor.log"))), 0)
      << slurp(path("doctor.log"));

  // Every base tensor bit-identical; the adapter moved.
  auto base = ktl::load_checkpoint(path("base"));
  auto tuned = ktl::load_lora_checkpoint(fin);
  auto want = base.model->named_parameters();
  int lora = 0;
  for (const auto& p : tuned.model->named_parameters()) {
    if (ktl::is_lora_parameter(p.key())) {
      if (p.key().find("lora_B") != std::string::npos) {
        EXPECT_GT(p.value().abs().max().item<double>(), 0) << p.key();
      }
      ++lora;
      continue;
    }
    EXPECT_TRUE(torch::equal(p.value(), want[p.key()])) << p.key();
  }
  EXPECT_EQ(lora, 2 * 7 * 2);
}

TEST_F(LoraCliTest, SigkilledRunResumesToTheUninterruptedAdapterBitForBit) {
  auto args = [&](const std::string& out) {
    auto a = lora_train(out, "200");
    for (const char* x : {"--lora-dropout", "0.1", "--save-steps", "20", "--eval-steps", "50"})
      a.push_back(x);
    return a;
  };
  ASSERT_EQ(wait_exit(spawn(args(path("straight")), path("straight.log"))), 0)
      << slurp(path("straight.log"));
  const std::string out = path("killed"), log = path("killed.log");
  const pid_t pid = spawn(args(out), log);
  ASSERT_TRUE(wait_for_text(log, "saved ", pid)) << slurp(log);
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  ASSERT_FALSE(fs::exists(out + "/final")) << "the run ended before the kill";
  const std::string log2 = path("killed-resume.log");
  ASSERT_EQ(
      wait_exit(spawn({"train", "--resume-from", out + "/latest", "--data", path("data")}, log2)),
      0)
      << slurp(log2);
  EXPECT_NE(slurp(log2).find("resumed from " + out + "/latest at step "), std::string::npos)
      << slurp(log2);
  EXPECT_EQ(ktl::testing::max_f32_tensor_diff(out + "/final/adapter_model.safetensors",
                                              path("straight/final/adapter_model.safetensors")),
            0.0);
}

TEST_F(LoraCliTest, MergedCheckpointGivesTheUnmergedLogitsAndEvalLoadsBoth) {
  const std::string fin = overfit_run() + "/final", merged = path("merged");
  const std::string log = path("merge.log");
  ASSERT_EQ(wait_exit(spawn({"merge-lora", "--adapter", fin, "--output-dir", merged}, log)), 0)
      << slurp(log);
  EXPECT_TRUE(fs::exists(merged + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(merged + "/adapter_config.json"));
  auto full = ktl::load_checkpoint(merged);
  auto lora = ktl::load_lora_checkpoint(fin);
  lora.model->eval();
  torch::NoGradGuard no_grad;
  auto tokens = torch::randint(4, 512, {2, 48}, torch::kLong);            // [B, T]
  auto a = full.model->forward(tokens), b = lora.model->forward(tokens);  // [B, T, V]
  EXPECT_LE((a - b).abs().max().item<double>(), 1e-4);
  EXPECT_GT(
      (b - ktl::load_checkpoint(path("base")).model->forward(tokens)).abs().max().item<double>(),
      1e-2);  // the adapter matters
  // eval --model takes the LoRA checkpoint (merged in memory): the same loss as the merged one.
  for (const std::string& m : {fin, merged}) {
    const std::string l = path("eval-" + fs::path(m).filename().string() + ".log");
    ASSERT_EQ(wait_exit(spawn({"eval", "--model", m, "--data", path("data"), "--split", "val",
                               "--bf16", "false", "--num-threads", "1"},
                              l)),
              0)
        << slurp(l);
  }
  const auto loss_of = [](const std::string& t) {
    const size_t at = t.find("\nloss: ");
    return at == std::string::npos ? NAN : std::stod(t.substr(at + 7));
  };
  EXPECT_NEAR(loss_of(slurp(path("eval-final.log"))), loss_of(slurp(path("eval-merged.log"))), 1e-3)
      << slurp(path("eval-final.log"));
  // generate --model takes it too (base from lora_base.json + the adapter in the engine): the
  // merged checkpoint's greedy ids, in fp32 (the int8 default rounds base and merged weights
  // differently).
  std::vector<std::string> ids;
  for (const std::string& m : {fin, merged}) {
    const std::string l = path("gen-" + fs::path(m).filename().string() + ".log");
    ASSERT_EQ(wait_exit(spawn({"generate", "--model", m, "--prompt", "오늘", "--temperature", "0",
                               "--max-tokens", "16", "--ignore-eos", "--json", "--threads", "1",
                               "--dtype", "fp32"},
                              l)),
              0)
        << slurp(l);
    const std::string t = slurp(l);
    const size_t at = t.find("\"ids\":[");
    ASSERT_NE(at, std::string::npos) << t;
    ids.push_back(t.substr(at, t.find(']', at) - at));
  }
  EXPECT_EQ(ids[0], ids[1]);
}

TEST_F(LoraCliTest, AnotherBaseIsRefusedByMergeAndResume) {
  const std::string fin = overfit_run() + "/final", log = path("refuse.log");
  EXPECT_NE(wait_exit(spawn({"merge-lora", "--adapter", fin, "--base", path("other"),
                             "--output-dir", path("bad-merge")},
                            log)),
            0);
  EXPECT_NE(slurp(log).find("not the same base model"), std::string::npos) << slurp(log);
  EXPECT_FALSE(fs::exists(path("bad-merge")));
  // A base replaced after training (same path, other weights) stops the resume.
  fs::copy(path("base"), path("movable"), fs::copy_options::recursive);
  const std::string out = path("moved");
  auto args = lora_train(out, "4", "movable");
  ASSERT_EQ(wait_exit(spawn(args, path("moved.log"))), 0) << slurp(path("moved.log"));
  fs::remove_all(path("movable"));
  fs::copy(path("other"), path("movable"), fs::copy_options::recursive);
  auto again = std::vector<std::string>{
      "train", "--resume-from", out + "/latest", "--data", path("data"), "--max-steps", "6"};
  EXPECT_NE(wait_exit(spawn(again, log)), 0);
  EXPECT_NE(slurp(log).find("not the same base model"), std::string::npos) << slurp(log);
}

TEST_F(LoraCliTest, LoraWithoutAFullBaseIsRefused) {
  const std::string log = path("nobase.log");
  EXPECT_EQ(wait_exit(spawn({"train", "--model-config", path("model.yaml"), "--data", path("data"),
                             "--output-dir", path("nobase"), "--lora-rank", "4"},
                            log)),
            2);
  EXPECT_NE(slurp(log).find("--init-from"), std::string::npos) << slurp(log);
  EXPECT_EQ(wait_exit(spawn({"sft", "--init-from", overfit_run() + "/final", "--data",
                             path("chat.tsv"), "--output-dir", path("nobase2"), "--lora-rank", "4"},
                            log)),
            2);
  EXPECT_NE(slurp(log).find("ktl merge-lora"), std::string::npos) << slurp(log);
  EXPECT_NE(wait_exit(spawn({"train", "--data", path("data"), "--output-dir", path("x"),
                             "--lora-targets", "q,wq"},
                            log)),
            0);
  EXPECT_NE(slurp(log).find("unknown LoRA target 'wq'"), std::string::npos) << slurp(log);
}

TEST_F(LoraCliTest, SftWithLoraWritesAnAdapterCheckpoint) {
  const std::string out = path("sft"), log = path("sft.log");
  ASSERT_EQ(wait_exit(spawn({"sft",
                             "--init-from",
                             path("base"),
                             "--data",
                             path("chat.tsv"),
                             "--output-dir",
                             out,
                             "--lora-rank",
                             "4",
                             "--lora-targets",
                             "q,v",
                             "--max-steps",
                             "6",
                             "--batch-size",
                             "2",
                             "--max-seq-length",
                             "64",
                             "--num-threads",
                             "1",
                             "--bf16",
                             "false",
                             "--eval-steps",
                             "3",
                             "--sample-steps",
                             "6",
                             "--samples",
                             "1",
                             "--log-steps",
                             "3"},
                            log)),
            0)
      << slurp(log);
  EXPECT_NE(slurp(log).find("LoRA: r 4"), std::string::npos) << slurp(log);
  // No --learning-rate: the LoRA SFT defaults (3e-3 to 3e-4), not full SFT's 1e-4.
  EXPECT_NE(slurp(log).find("\nlearning_rate: 0.003\n"), std::string::npos) << slurp(log);
  EXPECT_NE(slurp(log).find("\nmin_learning_rate: 0.0003\n"), std::string::npos) << slurp(log);
  EXPECT_NE(slurp(log).find("\ngradient_checkpointing: true\n"), std::string::npos) << slurp(log);
  EXPECT_NE(slurp(log).find("chat samples step 6"), std::string::npos) << slurp(log);
  EXPECT_TRUE(fs::exists(out + "/final/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/final/model.safetensors"));
  const json cfg = json::parse(slurp(out + "/final/adapter_config.json"));
  EXPECT_EQ(cfg["target_modules"], json({"q_proj", "v_proj"}));
}

TEST_F(LoraCliTest, DpoWithLoraUsesTheBaseAsItsReference) {
  const std::string out = path("dpo"), log = path("dpo.log");
  ASSERT_EQ(wait_exit(spawn({"dpo",
                             "--init-from",
                             path("base"),
                             "--data",
                             path("prefs.jsonl"),
                             "--output-dir",
                             out,
                             "--lora-rank",
                             "4",
                             "--max-steps",
                             "10",
                             "--batch-size",
                             "2",
                             "--max-seq-length",
                             "64",
                             "--num-threads",
                             "1",
                             "--bf16",
                             "false",
                             "--learning-rate",
                             "1e-3",
                             "--log-steps",
                             "5",
                             "--val-fraction",
                             "0.25"},
                            log)),
            0)
      << slurp(log);
  const std::string text = slurp(log);
  // Before any step the policy is the base with a zero adapter: chosen and rejected rewards 0.
  EXPECT_NE(text.find("val step 0 | dpo loss 0.6931 | reward accuracy 0.000 | margin 0.0000"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("dpo completed at step 10"), std::string::npos) << text;
  EXPECT_TRUE(fs::exists(out + "/final/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/final/model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/final/lora_base.json"));
  // A resume finds the base through lora_base.json; the reference stays the base.
  const std::string log2 = path("dpo-resume.log");
  ASSERT_EQ(wait_exit(spawn({"dpo", "--resume-from", out + "/checkpoint-10", "--data",
                             path("prefs.jsonl"), "--max-steps", "12"},
                            log2)),
            0)
      << slurp(log2);
  EXPECT_NE(slurp(log2).find("dpo completed at step 12"), std::string::npos) << slurp(log2);
}

}  // namespace
