// Test helper: a tiny SentencePiece tokenizer and a random-init checkpoint in a temp directory.
// Header-only; needs ktl_model (LibTorch) and ktl_tokenizer.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/model/checkpoint.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/korean_fixture.h"

namespace ktl::testing {

// A fresh directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "ktl") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (tag + "-XXXXXX")).string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Trains a small BPE tokenizer on generated Korean sentences; returns the .model path.
inline std::string make_tiny_tokenizer(const std::string& dir, int vocab_size = 512) {
  std::filesystem::create_directories(dir);
  const std::string corpus = dir + "/corpus.txt";
  write_lines(corpus, korean_sentences(3000));
  TokenizerTrainOptions o;
  o.input_files = {corpus};
  o.model_prefix = dir + "/tokenizer";
  o.vocab_size = vocab_size;
  o.input_sentence_size = 0;
  o.character_coverage = 0.99;  // rare syllables go through byte fallback
  train_tokenizer(o);
  return dir + "/tokenizer.model";
}

inline ModelConfig tiny_model_config(int vocab_size) {
  ModelConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.intermediate_size = 96;
  c.max_seq_length = 128;
  return c;
}

// Writes a random-init checkpoint at `dir` using the tokenizer at `tokenizer_model`.
inline void make_tiny_checkpoint(const std::string& dir, const std::string& tokenizer_model,
                                 uint64_t seed = 1) {
  auto tok = Tokenizer::load(tokenizer_model);
  Transformer model(tiny_model_config(tok->vocab_size()));
  model->init_weights(seed);
  save_checkpoint(dir, *model, tok->model_bytes(), CheckpointMeta{});
}

}  // namespace ktl::testing
