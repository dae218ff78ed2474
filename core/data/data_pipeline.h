// The `ktl prepare-data` pipeline: read -> clean -> drop held-out texts -> exact dedup ->
// (near dedup) -> split -> tokenizer (trained on the train split unless one is given) -> token
// shards + stats.json.
//
// DATA_DIR layout it writes:
//   train.txt val.txt test.txt   cleaned documents, separated by one blank line (no blank lines
//                                inside a document)
//   tokenizer.model/.vocab       the SentencePiece model the shards were made with
//   train.bin val.bin test.bin   token shards (core/data/token_shard.h)
//   stats.json                   documents and characters per stage, tokens per split,
//                                characters per token on val (overall and per source: one --input),
//                                each source's share of the tokenizer's training text
// Thread-safety: run_data_pipeline() may run concurrently on different output directories.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/data/corpus_reader.h"
#include "core/data/dataset_split.h"
#include "core/data/dedup.h"
#include "core/data/text_cleaner.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl {

struct PipelineConfig {
  std::vector<std::string> inputs;   // files and directories
  // Evaluation files whose texts no split may contain (core/data/held_out_texts.h); matching
  // documents are dropped as "held_out" before dedup.
  std::vector<std::string> exclude;
  std::filesystem::path output_dir;  // DATA_DIR, created when missing
  ReaderConfig reader;
  CleanerConfig cleaner;
  bool near_dedup = false;  // MinHash/LSH near-duplicate removal (costs memory)
  NearDedupConfig near;
  SplitConfig split;
  std::string tokenizer;                  // existing model file or dir; empty = train one
  bool tokenize = true;                   // false: stop after the text splits
  TokenizerTrainOptions tokenizer_train;  // vocab size, model type, sampling (paths filled in)
  int threads = 2;                        // tokenization threads
  uint64_t max_docs = 0;                  // stop reading after this many kept documents (0 = all)
  // Characters of each source (an input file or directory; train split) that may go into the
  // tokenizer's training text; 0 = no cap. Balances a big source (reviews) against small ones
  // (written sentences) so the vocabulary serves both; the shards still hold every document.
  uint64_t tokenizer_source_cap_chars = 0;
  bool progress = true;  // progress lines on stderr
};

struct StageCount {
  uint64_t docs = 0;
  uint64_t chars = 0;
};

struct SplitStats {
  uint64_t docs = 0, chars = 0, bytes = 0, tokens = 0;  // tokens include one </s> per document
};

// Per source (one input as given, a file or a whole directory, by its last path component): what
// it contributed and how well the tokenizer compresses its validation documents.
struct SourceStats {
  uint64_t train_docs = 0, train_chars = 0;
  uint64_t tokenizer_chars = 0;  // of train_chars, those the tokenizer was trained on
  uint64_t val_docs = 0, val_chars = 0, val_tokens = 0;  // val_tokens without </s>
  double val_chars_per_token() const {
    return val_tokens ? double(val_chars) / double(val_tokens) : 0.0;
  }
};

struct PipelineStats {
  StageCount read, cleaned, after_exact, after_near;
  std::map<std::string, uint64_t> dropped;  // reason -> documents (too_short, low_hangul, ...)
  uint64_t exact_duplicates = 0, near_duplicates = 0, input_errors = 0;
  uint64_t held_out_texts = 0;  // texts loaded from PipelineConfig::exclude
  std::map<std::string, SplitStats> splits;    // train, val, test
  double val_chars_per_token = 0;              // val characters / val tokens without </s>
  std::map<std::string, SourceStats> sources;  // by source name
  uint64_t tokenizer_source_cap_chars = 0;     // the cap used (0 = none)
  bool tokenizer_trained = false;              // false: an existing tokenizer was used
  int vocab_size = 0;
  std::map<std::string, double> seconds;  // wall time per stage
};

PipelineStats run_data_pipeline(const PipelineConfig& cfg);

// Trains into out_dir/tokenizer.model and tokenizer.vocab (replaced atomically). A corpus too
// small for the requested vocabulary yields fewer pieces (or, if SentencePiece refuses, a retry
// with the largest size it accepts); either way a note goes to stderr. Returns the size used.
int train_tokenizer_into(TokenizerTrainOptions opts, const std::filesystem::path& out_dir);

// Tokenizes a split file (documents separated by blank lines) into a shard with `threads`
// threads, printing progress (docs/s, MB/s, ETA) to stderr when `progress`.
SplitStats tokenize_split_file(const std::filesystem::path& txt, const std::filesystem::path& bin,
                               const Tokenizer& tok, int threads, bool progress);

// Calls fn for each document of a split file (blank-line separated). Throws on I/O errors.
void for_each_split_document(const std::filesystem::path& txt,
                             const std::function<void(std::string&&)>& fn);

std::string pipeline_stats_json(const PipelineStats& s);

}  // namespace ktl
