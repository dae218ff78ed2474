// ktl prepare-data: raw Korean text -> cleaned, deduplicated, split text and token shards.
#include <iomanip>
#include <iostream>

#include "cli/command.h"
#include "core/data/data_pipeline.h"
#include "core/data/default_corpus.h"

namespace {

ktl::PipelineConfig config_from(const ktl::cli::Args& a) {
  ktl::PipelineConfig c;
  c.inputs = a.get_all("input");
  if (a.get_bool("default-corpus"))
    for (auto& p : ktl::default_corpus_inputs()) c.inputs.push_back(p);
  if (c.inputs.empty())
    throw ktl::cli::UsageError("give --input FILE_OR_DIR (repeatable) or --default-corpus");
  c.output_dir = a.get("output");
  c.exclude = a.get_all("exclude");
  c.reader.format = a.get("format", "auto");
  c.reader.text_field = a.get("text-field", "text");
  c.reader.txt_docs = a.get("txt-docs", "auto");
  for (const auto& [flag, v, allowed] :
       {std::tuple<const char*, std::string, std::vector<std::string>>{
            "format", c.reader.format, {"auto", "text", "jsonl", "json", "html", "mediawiki"}},
        {"txt-docs", c.reader.txt_docs, {"auto", "line", "paragraph"}}}) {
    bool ok = false;
    for (const auto& x : allowed) ok |= x == v;
    if (!ok) throw ktl::cli::UsageError(std::string("--") + flag + ": unknown value '" + v + "'");
  }
  c.cleaner.strip_html = !a.get_bool("keep-html");
  c.cleaner.squeeze_repeats = static_cast<int>(a.get_int("squeeze-repeats", 0));
  c.cleaner.mask_urls = a.get_bool("mask-urls");
  c.cleaner.min_chars = static_cast<size_t>(a.get_int("min-chars", 5));
  c.cleaner.max_chars = static_cast<size_t>(a.get_int("max-chars", 1000000));
  c.cleaner.min_hangul_share = a.get_double("min-hangul", 0.5);
  // The default corpus mixes untranslated English lines into Korean pages: keep Korean lines.
  c.cleaner.min_line_hangul_share =
      a.get_double("min-line-hangul", a.get_bool("default-corpus") ? 0.3 : 0.0);
  c.near_dedup = a.get_bool("near-dedup");
  c.near.threshold = a.get_double("near-dedup-threshold", 0.8);
  if (c.near.threshold <= 0 || c.near.threshold > 1)
    throw ktl::cli::UsageError("--near-dedup-threshold must be in (0, 1]");
  c.split.seed = static_cast<uint64_t>(a.get_int("seed", 1234));
  c.split.val_fraction = a.get_double("val-fraction", 0.01);
  c.split.test_fraction = a.get_double("test-fraction", 0.01);
  c.tokenizer = a.get("tokenizer");
  c.tokenize = !a.get_bool("no-tokenize");
  c.tokenizer_train.vocab_size = static_cast<int>(a.get_int("vocab-size", 32000));
  c.tokenizer_train.model_type = a.get("model-type", "bpe");
  c.tokenizer_train.input_sentence_size = a.get_int("input-sentence-size", 2000000);
  c.tokenizer_train.seed = static_cast<int>(c.split.seed);
  c.threads = static_cast<int>(a.get_int("threads", 2));
  c.tokenizer_train.num_threads = c.threads;
  c.max_docs = static_cast<uint64_t>(a.get_int("max-docs", 0));
  const long long cap = a.get_int("tokenizer-source-cap", 0);
  if (cap < 0) throw ktl::cli::UsageError("--tokenizer-source-cap must be >= 0");
  c.tokenizer_source_cap_chars = static_cast<uint64_t>(cap);
  c.progress = !a.get_bool("quiet");
  return c;
}

int run(const ktl::cli::Args& a) {
  const auto cfg = config_from(a);
  const auto s = ktl::run_data_pipeline(cfg);
  std::cout << "read " << s.read.docs << " docs (" << s.read.chars << " chars); kept "
            << s.cleaned.docs << " after cleaning, " << s.after_exact.docs << " after exact dedup";
  if (cfg.near_dedup) std::cout << ", " << s.after_near.docs << " after near dedup";
  std::cout << "; " << s.input_errors << " input errors\n";
  if (!cfg.exclude.empty()) {
    const auto it = s.dropped.find("held_out");
    std::cout << "held out: " << (it == s.dropped.end() ? 0 : it->second)
              << " documents dropped, matching " << s.held_out_texts << " texts of --exclude\n";
  }
  for (const char* name : {"train", "val", "test"}) {
    const auto it = s.splits.find(name);
    if (it == s.splits.end()) continue;
    std::cout << "  " << std::left << std::setw(6) << name << it->second.docs << " docs, "
              << it->second.chars << " chars";
    if (cfg.tokenize) std::cout << ", " << it->second.tokens << " tokens";
    std::cout << "\n";
  }
  if (cfg.tokenize) {
    std::cout << "vocab " << s.vocab_size << ", val chars/token " << std::fixed
              << std::setprecision(3) << s.val_chars_per_token << "\n";
    for (const auto& [name, src] : s.sources) {
      std::cout << "  source " << name << ": val chars/token " << std::setprecision(3)
                << src.val_chars_per_token() << " (" << src.val_docs << " val docs)";
      if (s.tokenizer_trained)
        std::cout << "; " << src.tokenizer_chars << " of its " << src.train_chars
                  << " train chars trained the tokenizer";
      std::cout << "\n";
    }
  }
  std::cout << "wrote " << cfg.output_dir.string() << "/stats.json\n";
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "prepare-data",
    "clean, deduplicate and split Korean text, train a tokenizer, write token shards",
    {{"input", "file or directory (.txt .jsonl .json .html .xml, optionally .gz/.bz2)", "", false,
      false, true},
     {"default-corpus", "add the Korean text of Debian's libreoffice-help-ko and debian-faq-ko", "",
      true},
     {"output", "data directory to write (train/val/test .txt and .bin, stats.json)", "", false,
      true},
     {"format", "auto, text, jsonl, json, html or mediawiki", "auto"},
     {"text-field", "JSON field holding the text", "text"},
     {"txt-docs", "text files: auto, line (one doc per line) or paragraph (blank-line separated)",
      "auto"},
     {"min-chars", "drop documents shorter than this many characters", "5"},
     {"max-chars", "drop documents longer than this many characters", "1000000"},
     {"min-hangul", "drop documents whose Hangul share of letters is below this (0 = off)", "0.5"},
     {"min-line-hangul",
      "first drop lines whose Hangul share of letters is below this (0 = off; 0.3 with "
      "--default-corpus)",
      "0"},
     {"squeeze-repeats", "cap runs of one character at N (0 = off; 3: ㅋㅋㅋㅋㅋ -> ㅋㅋㅋ)", "0"},
     {"mask-urls", "replace URLs with <url> and e-mail addresses with <email>", "", true},
     {"keep-html", "do not strip HTML tags/entities from text and JSON inputs", "", true},
     {"exclude",
      "evaluation file whose texts no split may contain (.jsonl: every string; else a line each; "
      "repeatable)",
      "", false, false, true},
     {"near-dedup", "also drop near-duplicates (MinHash over character 5-grams)", "", true},
     {"near-dedup-threshold", "estimated Jaccard similarity counted as duplicate", "0.8"},
     {"seed", "split and sampling seed", "1234"},
     {"val-fraction", "share of documents for val", "0.01"},
     {"test-fraction", "share of documents for test", "0.01"},
     {"tokenizer", "use this tokenizer.model (or dir) instead of training one"},
     {"vocab-size", "vocabulary of the trained tokenizer", "32000"},
     {"model-type", "bpe or unigram", "bpe"},
     {"input-sentence-size", "sentences sampled for tokenizer training (0 = all)", "2000000"},
     {"no-tokenize", "stop after writing the text splits", "", true},
     {"threads", "tokenization threads", "2"},
     {"max-docs", "stop after this many kept documents (0 = all)", "0"},
     {"tokenizer-source-cap",
      "at most this many characters of each --input (file or directory) train the tokenizer (0 = "
      "no cap)",
      "0"},
     {"quiet", "no progress lines", "", true}},
    run});

}  // namespace
