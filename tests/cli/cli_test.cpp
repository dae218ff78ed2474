// The ktl binary's command-line contract: help lists commands, bad usage exits 2 with one line.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <torch/cuda.h>

#include "core/base/file_util.h"
#include "core/data/token_shard.h"
#include "core/model/checkpoint_meta.h"
#include "core/model/device.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/tiny_checkpoint.h"

#include "tests/support/cli_process.h"

namespace {

using Result = ktl::cli_process::CliRun;

Result run(const std::string& args) {
  return ktl::cli_process::run_ktl(args);
}

// run() merges stderr into the output; the JSON object is the last line starting with '{'.
nlohmann::json last_json_line(const std::string& out) {
  const size_t at = out.rfind("\n{");
  return nlohmann::json::parse(out.substr(at == std::string::npos ? out.find('{') : at + 1));
}

TEST(Cli, HelpListsEveryCommand) {
  auto r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* c : {"info", "init-model", "prepare-data", "train-tokenizer", "train",
                        "generate", "eval", "bench", "export", "serve"})
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

// ktl dpo refuses bad settings as usage errors (exit 2) before reading any file.
TEST(Cli, DpoRefusesBadSettingsBeforeReadingAnything) {
  struct Case {
    const char* args;
    const char* says;
  };
  for (const Case& c : {
           Case{"dpo --data p.jsonl --output-dir o", "give --init-from"},
           Case{"dpo --init-from x --data p.jsonl --output-dir o --loss ppo", "dpo or orpo"},
           Case{"dpo --init-from x --data p.jsonl --output-dir o --beta 0", "beta must be > 0"},
           Case{"dpo --init-from x --data p.jsonl --output-dir o --early-stopping-patience 2",
                "early_stopping_patience is not supported by dpo"},
           Case{"dpo --init-from x --data p.jsonl --output-dir o --rejected-top-p 2",
                "--rejected-top-p in (0, 1]"},
           Case{"dpo --init-from x --data p.jsonl --output-dir o --max-stepz 3",
                "unknown flag --max-stepz"},
       }) {
    const auto r = run(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args << "\n" << r.out;
  }
}

// The engine is CPU code: a GPU device is refused by name, whether or not the machine has one.
TEST(Cli, EngineCommandsRefuseAbsentDevices) {
  // Every device that exists is served; one this machine or LibTorch build lacks is a usage
  // error (exit 2) that names it.
  struct Dev {
    const char* name;
    bool present;
    const char* why;
  };
  const Dev devs[] = {{"cuda", torch::cuda::is_available(), "CUDA is not available"},
                      {"mps", ktl::mps_available(), "MPS is not available"},
                      {"tpu", false, "unknown device"}};
  for (const char* cmd : {"generate --model x --prompt a", "bench --random-init", "serve"}) {
    for (const Dev& d : devs) {
      if (d.present) continue;
      auto r = run(std::string(cmd) + " --device " + d.name);
      EXPECT_EQ(r.code, 2) << cmd << " " << d.name << ": " << r.out;
      EXPECT_NE(r.out.find(std::string("--device ") + d.name), std::string::npos) << r.out;
      EXPECT_NE(r.out.find(d.why), std::string::npos) << r.out;
    }
  }
}

TEST(Cli, BenchPassesTheDeviceThrough) {
  auto r = run(
      "bench --random-init --model-config " KTL_SOURCE_DIR
      "/configs/model_tiny.yaml --device cpu --torch-ops --prompt-tokens 8 --gen-tokens 4 --json "
      "--dtype fp32");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = last_json_line(r.out);
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["torch_ops"], true);  // the device path, forced on the CPU
  EXPECT_EQ(j["compute_dtype"], "fp32");
  EXPECT_GT(j["decode_tok_s"].get<double>(), 0);
}

TEST(Cli, InfoPrintsClosedFormParameterCount) {
  auto r = run("info --model-config " KTL_SOURCE_DIR "/configs/model_small.yaml");
  EXPECT_EQ(r.code, 0) << r.out;
  ktl::ModelConfig small;  // defaults are model_small
  EXPECT_NE(r.out.find(std::to_string(small.num_parameters())), std::string::npos) << r.out;
  // The engine's kernels and the threads they really get (all of them, with OpenMP built in).
  EXPECT_NE(r.out.find("int8 kernels"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gemv kernels"), std::string::npos) << r.out;
#if defined(KTL_ENGINE_OPENMP) || !defined(__APPLE__)
  const std::string n = std::to_string(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_NE(r.out.find("engine threads " + n + " of " + n), std::string::npos) << r.out;
#endif
}

TEST(Cli, InitModelWritesALoadableCheckpoint) {
  ktl::testing::TempDir d;
  const auto tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  std::ofstream(d / "m.yaml") << "vocab_size: 512\nhidden_size: 32\nnum_layers: 1\nnum_heads: 2\n"
                                 "num_kv_heads: 1\nintermediate_size: 48\nmax_seq_length: 64\n";
  auto r = run("init-model --model-config " + d / "m.yaml" + " --tokenizer " + d / "tok" +
               " --out " + d / "ck" + " --seed 7");
  ASSERT_EQ(r.code, 0) << r.out;
  auto ck = ktl::load_checkpoint(d / "ck");
  EXPECT_EQ(ck.config.hidden_size, 32);
  ktl::Transformer ref(ck.config);
  ref->init_weights(7);
  EXPECT_TRUE(torch::equal(ref->embed_tokens->weight, ck.model->embed_tokens->weight));
  // A missing file is an error (exit 1) that names it.
  r = run("init-model --model-config " + d / "nope.yaml" + " --tokenizer " + d / "tok" + " --out " +
          d / "x");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("nope.yaml"), std::string::npos) << r.out;
}

TEST(Cli, GenerateJsonPrintsTheGreedyTokenIds) {
  ktl::testing::TempDir d;
  const auto tok_path = ktl::testing::make_tiny_tokenizer(d / "tok");
  ktl::testing::make_tiny_checkpoint(d / "ck", tok_path, 3);
  const std::string args = "generate --model " + d / "ck" +
                           " --prompt '나는 학교에서' --max-tokens 8 --temperature 0 --ignore-eos "
                           "--json --threads 1 --kv-cache-mb 8 --dtype fp32";
  auto r = run(args);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = last_json_line(r.out);
  const auto prompt_ids = j.at("prompt_ids").get<std::vector<int>>();
  const auto ids = j.at("ids").get<std::vector<int>>();
  EXPECT_EQ(j.at("finish"), "length");  // --ignore-eos: exactly --max-tokens tokens
  ASSERT_EQ(ids.size(), 8u);

  auto ck = ktl::load_checkpoint(d / "ck");
  std::vector<int> want_prompt{ck.tokenizer->bos_id()};
  for (int id : ck.tokenizer->encode("나는 학교에서")) want_prompt.push_back(id);
  EXPECT_EQ(prompt_ids, want_prompt);

  // The same greedy ids from the training module, one full forward per step (no KV cache), up to
  // a near tie (top-2 logits within 1e-4), where the engine's different summation order may
  // legitimately pick the other token.
  torch::NoGradGuard ng;
  std::vector<int64_t> seq(prompt_ids.begin(), prompt_ids.end());
  size_t compared = 0;
  for (size_t i = 0; i < ids.size(); ++i, ++compared) {
    auto logits = ck.model->forward(torch::tensor(seq).unsqueeze(0))[0][-1];
    auto top2 = std::get<0>(logits.topk(2));
    if ((top2[0] - top2[1]).item<float>() < 1e-4f) break;
    EXPECT_EQ(ids[i], logits.argmax().item<int64_t>()) << "at generated position " << i;
    seq.push_back(ids[i]);
  }
  RecordProperty("greedy_ids_compared", static_cast<int>(compared));
  EXPECT_EQ(last_json_line(run(args).out).at("ids").get<std::vector<int>>(), ids)
      << "greedy output should repeat exactly";
}

// `ktl export --dtype int8` (issue #24's spelling) is `--format ktl --quantize int8`: the same
// int8 checkpoint, which `ktl generate` then serves as int8 without being told (--dtype auto);
// auto serves the fp32 checkpoint as int8 too (the measured default), an asked format wins.
TEST(Cli, ExportDtypeInt8WritesAnInt8CheckpointThatLoadsAsIs) {
  ktl::testing::TempDir d;
  const auto tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  ktl::testing::make_tiny_checkpoint(d / "ck", tok, 3);
  auto r = run("export --dtype int8 --model " + d / "ck" + " --out " + d / "q1");
  ASSERT_EQ(r.code, 0) << r.out;
  r = run("export --format ktl --quantize int8 --model " + d / "ck" + " --out " + d / "q2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(ktl::read_checkpoint_meta(d / "q1").extra.at("quantization"), "int8");
  EXPECT_EQ(ktl::read_file(d / "q1/model.safetensors"), ktl::read_file(d / "q2/model.safetensors"));
  const std::string gen =
      " --prompt '나는' --max-tokens 4 --temperature 0 --ignore-eos --json --threads 1 "
      "--kv-cache-mb 8";
  for (const auto& [dir, extra, dtype] :
       {std::tuple{"q1", "", "int8"}, std::tuple{"ck", "", "int8"},
        std::tuple{"ck", " --dtype fp32", "fp32"}, std::tuple{"q1", " --dtype bf16", "bf16"}}) {
    r = run("generate --model " + d / dir + gen + extra);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(last_json_line(r.out).at("dtype"), dtype) << dir << extra;
  }
  // int8 is not a GGUF type (q8_0 is), and --format ktl writes nothing but int8.
  r = run("export --format gguf --dtype int8 --model " + d / "ck" + " --out " + d / "x.gguf");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("q8_0"), std::string::npos) << r.out;
  EXPECT_EQ(run("export --format ktl --dtype f16 --model " + d / "ck" + " --out " + d / "q3").code,
            2);
  EXPECT_EQ(run("export --format ktl --model " + d / "ck" + " --out " + d / "q3").code, 2);
}

// `ktl eval --dtype` scores the held-out windows through the serving engine: fp32 gives the
// training path's bits per character (its --bf16 false), int8 and bf16 a finite, close value.
TEST(Cli, EvalDtypeScoresTheSplitThroughTheEngine) {
  ktl::testing::TempDir d;
  const auto tok_path = ktl::testing::make_tiny_tokenizer(d / "tok");
  ktl::testing::make_tiny_checkpoint(d / "ck", tok_path, 3);
  auto tok = ktl::Tokenizer::load(tok_path);
  std::filesystem::create_directories(d / "data");
  {
    ktl::TokenShardWriter w(d / "data/test.bin", uint32_t(tok->vocab_size()));
    for (const auto& s : ktl::testing::korean_sentences(200, 5))
      w.add_document(tok->encode(s), s.size() / 3);
    w.finish();
  }
  auto bpc = [&](const std::string& extra) {
    auto r = run("eval --model " + d / "ck" + " --data " + d / "data" +
                 " --batch-size 3 --max-batches 2 --max-seq-length 50 --num-threads 1" + extra);
    EXPECT_EQ(r.code, 0) << r.out;
    const size_t at = r.out.find("bits per character: ");
    EXPECT_NE(at, std::string::npos) << r.out;
    return at == std::string::npos ? -1.0 : std::stod(r.out.substr(at + 20));
  };
  const double train = bpc(" --bf16 false");
  ASSERT_GT(train, 0);
  EXPECT_NEAR(bpc(" --dtype fp32"), train, 2e-4);  // printed to 4 decimals
  for (const char* q : {" --dtype int8", " --dtype bf16"}) {
    const double v = bpc(q);
    EXPECT_TRUE(std::isfinite(v)) << q;
    EXPECT_NEAR(v, train, 0.01 * train) << q;
  }
  EXPECT_EQ(run("eval --model " + d / "ck" + " --data " + d / "data" + " --dtype fp16").code, 2);
  EXPECT_EQ(
      run("eval --model " + d / "ck" + " --data " + d / "data" + " --dtype int8 --bf16 true").code,
      2);
}

// `ktl chat` as a person uses it: a reply streams, Ctrl-C stops that reply and not the program
// (at the prompt it only prints a hint), /reset and /exit work, the exit code is 0.
class ChatProcess {
 public:
  explicit ChatProcess(const std::vector<std::string>& args) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      dup2(out[1], 2);
      close(in[1]);
      close(out[0]);
      const char* bin = std::getenv("KTL_BIN");
      std::vector<std::string> argv_s{bin ? bin : KTL_BINARY_DIR "/ktl"};
      argv_s.insert(argv_s.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~ChatProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(to_);
    close(from_);
  }
  void send(const std::string& line) {
    ASSERT_EQ(write(to_, line.data(), line.size()), ssize_t(line.size()));
  }
  // Reads until `pred(output)` holds or `ms` pass; returns whether it held.
  template <class Pred>
  bool read_until(Pred pred, int ms = 60000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!pred(out_)) {
      const int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(
                               end - std::chrono::steady_clock::now())
                               .count());
      if (left <= 0) return false;
      pollfd p{from_, POLLIN, 0};
      if (poll(&p, 1, left) <= 0) continue;
      char buf[4096];
      const ssize_t n = read(from_, buf, sizeof buf);
      if (n <= 0) return pred(out_);
      out_.append(buf, size_t(n));
    }
    return true;
  }
  int wait_exit() {
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  pid_t pid() const { return pid_; }
  const std::string& out() const { return out_; }

 private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  bool exited_ = false;
  std::string out_;
};

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(Cli, ChatStreamsKeepsGoingAfterCtrlCAndExitsCleanly) {
  ktl::testing::TempDir d;
  const auto tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  std::ofstream(d / "m.yaml") << "vocab_size: 512\nhidden_size: 32\nnum_layers: 1\nnum_heads: 2\n"
                                 "num_kv_heads: 1\nintermediate_size: 48\nmax_seq_length: 4096\n";
  ASSERT_EQ(run("init-model --model-config " + d / "m.yaml" + " --tokenizer " + d / "tok" +
                " --out " + d / "ck")
                .code,
            0);
  ChatProcess chat({"chat", "--model", d / "ck", "--max-tokens", "3800", "--temperature", "1.0",
                    "--seed", "3", "--threads", "1", "--kv-cache-mb", "16", "--dtype", "fp32"});
  ASSERT_GT(chat.pid(), 0);
  ASSERT_TRUE(chat.read_until([](const std::string& o) { return count(o, "> ") >= 1; }))
      << chat.out();
  // A long reply is under way once text follows the prompt; Ctrl-C stops it. A reply that ends
  // by itself first (the random model wrote <|end|>) is simply retried.
  bool stopped = false;
  for (int attempt = 0; attempt < 6 && !stopped; ++attempt) {
    const size_t prompts = count(chat.out(), "> ");
    const size_t before = chat.out().size();
    chat.send("안녕하세요 " + std::to_string(attempt) + "\n");
    ASSERT_TRUE(chat.read_until([&](const std::string& o) { return o.size() > before + 40; }))
        << chat.out();
    kill(chat.pid(), SIGINT);
    ASSERT_TRUE(chat.read_until([&](const std::string& o) { return count(o, "> ") > prompts; }))
        << chat.out();
    stopped = chat.out().find("[stopped]") != std::string::npos;
  }
  EXPECT_TRUE(stopped) << chat.out();
  // Ctrl-C at the prompt: a hint, and the program goes on.
  kill(chat.pid(), SIGINT);
  EXPECT_TRUE(chat.read_until([](const std::string& o) {
    return o.find("Ctrl-D to quit") != std::string::npos;
  })) << chat.out();
  chat.send("/reset\n");
  EXPECT_TRUE(chat.read_until([](const std::string& o) {
    return o.find("(history cleared)") != std::string::npos;
  })) << chat.out();
  chat.send("/exit\n");
  EXPECT_EQ(chat.wait_exit(), 0) << chat.out();
}

}  // namespace
