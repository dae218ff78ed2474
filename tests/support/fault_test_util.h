// Helpers for the fault-injection tests (tests/faults/): run `ktl` with the preloaded fault
// library (tests/faults/fault_inject.c) configured by environment, read its op log, pick which
// ops to fail, and make a tiny tokenizer + token shards to train on. Header-only; no LibTorch.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/data/token_shard.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/korean_fixture.h"

namespace ktl::testing {

inline std::string fault_ktl_bin() {
  const char* b = std::getenv("KTL_BIN");
  return b ? b : KTL_BINARY_DIR "/ktl";
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// One counted operation from KTL_FAULT_LOG: "<index> <op> <path>".
struct FaultOp {
  long index = 0;
  std::string op, path;
};

inline std::vector<FaultOp> read_fault_log(const std::string& path) {
  std::vector<FaultOp> ops;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    FaultOp o;
    ls >> o.index >> o.op;
    std::getline(ls, o.path);
    if (!o.path.empty() && o.path[0] == ' ') o.path.erase(0, 1);
    ops.push_back(o);
  }
  return ops;
}

// How a fault shows: the errno the op fails with, or the process killed at it.
struct Fault {
  long at = 0;
  std::string error;  // "ENOSPC", "EIO", "kill" (before the op), "kill-after"
  bool sticky = false;
  std::string describe() const {
    return error + " at op " + std::to_string(at) + (sticky ? " (and every op after)" : "");
  }
};

// Environment for one faulted run: `path_part` selects the files whose ops count.
inline std::map<std::string, std::string> fault_env(const std::string& path_part, const Fault& f,
                                                    const std::string& log = "") {
  std::map<std::string, std::string> env = {{"LD_PRELOAD", KTL_FAULT_LIB},
                                            {"KTL_FAULT_PATH", path_part},
                                            {"KTL_FAULT_AT", std::to_string(f.at)},
                                            {"KTL_FAULT_ERROR", f.error.empty() ? "ENOSPC" : f.error},
                                            {"KTL_FAULT_STICKY", f.sticky ? "1" : "0"}};
  if (!log.empty()) env["KTL_FAULT_LOG"] = log;
  return env;
}

// Runs `ktl args...` with `env` added, stdout+stderr into `log`; returns the exit code, or
// 128 + the signal that killed it.
inline int run_ktl(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                   const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<std::string> copy = args;
    std::string bin = fault_ktl_bin();
    std::vector<char*> argv{bin.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// True for a full walk (`make chaos`: KTL_FAULT_WALK=full): every op. Otherwise a sample.
inline bool full_fault_walk() {
  const char* w = std::getenv("KTL_FAULT_WALK");
  return w && std::string(w) == "full";
}

// The ops of `ops` with index in [first, last] to fail: all of them in a full walk (at most
// 200 of one kind, evenly spread), else for
// each kind of op its first, middle and last occurrence (so every kind is hit). Each gets the
// errno its kind sees on a real failing disk (ENOSPC for open/write, EIO for fsync/rename), and
// every third one a kill (before the op) instead, as a power cut would.
inline std::vector<Fault> faults_to_walk(const std::vector<FaultOp>& ops, long first, long last) {
  std::map<std::string, std::vector<long>> by_op;
  for (const auto& o : ops)
    if (o.index >= first && o.index <= last) by_op[o.op].push_back(o.index);
  std::set<long> picked;
  for (const auto& [op, idx] : by_op) {
    if (full_fault_walk()) {  // every op; a kind with thousands (text writes): 200 of them
      const size_t step = std::max<size_t>(1, idx.size() / 200);
      for (size_t i = 0; i < idx.size(); i += step) picked.insert(idx[i]);
      picked.insert(idx.back());
      continue;
    }
    picked.insert(idx.front());
    picked.insert(idx[idx.size() / 2]);
    picked.insert(idx.back());
  }
  std::map<long, std::string> op_of;
  for (const auto& o : ops) op_of[o.index] = o.op;
  std::vector<Fault> out;
  int k = 0;
  for (long at : picked) {
    const std::string& op = op_of[at];
    std::string err = (op == "fsync" || op == "rename") ? "EIO" : "ENOSPC";
    if (++k % 3 == 0) err = "kill";
    out.push_back({at, err, false});
  }
  return out;
}

// What a message must contain for a fault: the errno's words (or nothing for a kill).
inline std::string errno_words(const std::string& error) {
  if (error == "ENOSPC") return std::strerror(ENOSPC);
  if (error == "EIO") return std::strerror(EIO);
  return "";
}

// A tokenizer (vocab 512) and train/val token shards in `dir`, built in-process.
inline void make_tiny_data(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  write_lines(dir + "/corpus.txt", korean_sentences(3000));
  TokenizerTrainOptions o;
  o.input_files = {dir + "/corpus.txt"};
  o.model_prefix = dir + "/tokenizer";
  o.vocab_size = 512;
  o.character_coverage = 0.99;
  o.input_sentence_size = 0;
  train_tokenizer(o);
  auto tok = Tokenizer::load(dir + "/tokenizer.model");
  for (const char* split : {"train", "val"}) {
    TokenShardWriter w(dir + "/" + split + ".bin", uint32_t(tok->vocab_size()));
    for (const auto& s : korean_sentences(split[0] == 't' ? 800 : 100, split[0]))
      w.add_document(tok->encode(s), s.size() / 3);
    w.finish();
  }
  std::ofstream(dir + "/model.yaml")
      << "vocab_size: 512\nhidden_size: 32\nnum_layers: 2\nnum_heads: 4\nnum_kv_heads: 2\n"
         "intermediate_size: 64\nmax_seq_length: 64\n";
}

// `ktl train` flags for a few-second run on make_tiny_data's files.
inline std::vector<std::string> tiny_train_args(const std::string& data, const std::string& out,
                                                int max_steps, int save_steps,
                                                int sample_steps = 0) {
  if (sample_steps == 0) sample_steps = save_steps;
  return {"train",          "--model-config", data + "/model.yaml",
          "--data",         data,             "--output-dir",
          out,              "--batch-size",   "2",
          "--max-seq-length", "32",           "--num-threads",
          "1",              "--eval-batches", "1",
          "--eval-steps",   std::to_string(save_steps), "--sample-steps",
          std::to_string(sample_steps), "--warmup-steps", "2",
          "--bf16",         "false",  // auto picks by timing: runs under load could differ
          "--log-steps",    "1",              "--max-steps",
          std::to_string(max_steps), "--save-steps", std::to_string(save_steps)};
}

}  // namespace ktl::testing
