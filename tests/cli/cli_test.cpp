// The ktl binary's command-line contract: help lists commands, bad usage exits 2 with one line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/support/tiny_checkpoint.h"

namespace {

struct Result {
  int code;
  std::string out;  // stdout + stderr
};

Result run(const std::string& args) {
  const char* bin = std::getenv("KTL_BIN");
  std::string cmd = std::string(bin ? bin : KTL_BINARY_DIR "/ktl") + " " + args + " 2>&1";
  Result r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(Cli, HelpListsEveryCommand) {
  auto r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* c : {"info", "init-model", "prepare-data", "train-tokenizer", "train", "generate",
                        "eval", "bench", "export", "serve"})
    EXPECT_NE(r.out.find(std::string("  ") + c), std::string::npos) << c << "\n" << r.out;
}

TEST(Cli, CommandHelpListsFlags) {
  auto r = run("info --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--model-config"), std::string::npos) << r.out;
}

TEST(Cli, UnknownFlagExitsTwoWithOneLine) {
  auto r = run("info --model-config " KTL_SOURCE_DIR "/configs/model_tiny.yaml --bogus 1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("unknown flag --bogus"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
}

TEST(Cli, MissingArgumentAndUnknownCommandExitTwo) {
  EXPECT_EQ(run("info").code, 2);
  EXPECT_EQ(run("info --model-config").code, 2);
  EXPECT_EQ(run("no-such-command").code, 2);
}

TEST(Cli, InfoPrintsClosedFormParameterCount) {
  auto r = run("info --model-config " KTL_SOURCE_DIR "/configs/model_small.yaml");
  EXPECT_EQ(r.code, 0) << r.out;
  ktl::ModelConfig small;  // defaults are model_small
  EXPECT_NE(r.out.find(std::to_string(small.num_parameters())), std::string::npos) << r.out;
}

TEST(Cli, InitModelWritesALoadableCheckpoint) {
  ktl::testing::TempDir d;
  const auto tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  std::ofstream(d / "m.yaml") << "vocab_size: 512\nhidden_size: 32\nnum_layers: 1\nnum_heads: 2\n"
                                 "num_kv_heads: 1\nintermediate_size: 48\nmax_seq_length: 64\n";
  auto r = run("init-model --model-config " + d / "m.yaml" + " --tokenizer " + d / "tok" + " --out " +
               d / "ck" + " --seed 7");
  ASSERT_EQ(r.code, 0) << r.out;
  auto ck = ktl::load_checkpoint(d / "ck");
  EXPECT_EQ(ck.config.hidden_size, 32);
  ktl::Transformer ref(ck.config);
  ref->init_weights(7);
  EXPECT_TRUE(torch::equal(ref->embed_tokens->weight, ck.model->embed_tokens->weight));
  // A missing file is an error (exit 1) that names it.
  r = run("init-model --model-config " + d / "nope.yaml" + " --tokenizer " + d / "tok" + " --out " + d / "x");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("nope.yaml"), std::string::npos) << r.out;
}

}  // namespace
