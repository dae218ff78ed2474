// ktl chat-data: read chat data in any supported format, write its one train/val/test split
// (shared by sft, eval --chat and dpo) and build preference pairs inside each split.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/chat_split_flags.h"
#include "cli/command.h"
#include "core/base/file_util.h"
#include "core/data/chat_data.h"
#include "core/data/chat_split.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

int run_chat_data(const Args& args) {
  const ktl::ChatSplitConfig cfg = ktl::cli::chat_split_config(args);
  const uint64_t seed = uint64_t(args.get_int("seed", 1234));
  const std::string input = args.get("input");
  const ktl::ChatSplit split = ktl::load_chat_split(input, cfg, ktl::cli::chat_data_format(args));
  size_t turns = 0;
  for (const auto* l : {&split.train, &split.val, &split.test})
    for (const auto& c : *l) turns += c.messages.size();
  std::printf("%s (%zu messages)\nsplit (seed %llu, val %.3g, test %.3g): %s\n",
              split.read_report.c_str(), turns, (unsigned long long)cfg.seed, cfg.val_fraction,
              cfg.test_fraction, split.summary().c_str());
  if (args.has("split-out")) {
    ktl::write_chat_split(split, args.get("split-out"), cfg, input);
    std::printf("wrote %s/train.jsonl, val.jsonl, test.jsonl and split.json\n",
                args.get("split-out").c_str());
  }
  if (args.has("build-prefs")) {
    const std::string path = args.get("build-prefs");
    const auto prefs = ktl::build_preference_split(split, seed);
    const std::string val_path = ktl::preference_split_path(path, "val");
    const std::string test_path = ktl::preference_split_path(path, "test");
    ktl::write_file_atomic(path, ktl::preferences_to_jsonl(prefs.train));
    ktl::write_file_atomic(val_path, ktl::preferences_to_jsonl(prefs.val));
    ktl::write_file_atomic(test_path, ktl::preferences_to_jsonl(prefs.test));
    std::printf(
        "wrote %zu training preference pairs to %s (train conversations only), %zu to %s and "
        "%zu to %s (each from its own held-out groups); chosen: the pair's own answer, "
        "rejected: the answer to another question of the same split\n",
        prefs.train.size(), path.c_str(), prefs.val.size(), val_path.c_str(), prefs.test.size(),
        test_path.c_str());
  }
  return 0;
}

std::vector<ktl::cli::Flag> chat_data_flags() {
  std::vector<ktl::cli::Flag> f = {
      {"input",
       "chat data (OpenAI messages .jsonl, ShareGPT or Alpaca .json/.jsonl, Q/A .tsv) or a split "
       "directory",
       "", false, true},
      {"seed", "preference pairing seed", "1234"},
      {"split-out", "directory for train.jsonl, val.jsonl, test.jsonl and split.json"},
      {"build-prefs",
       "write training preference pairs here (FILE.jsonl) and held-out ones to FILE.val.jsonl "
       "and FILE.test.jsonl"}};
  for (auto& x : ktl::cli::chat_split_flags()) f.push_back(x);
  return f;
}

KTL_COMMAND(ktl::cli::Command{
    "chat-data",
    "Read chat data, write its train/val/test split (by prompt and answer group), build DPO "
    "preference pairs per split.",
    chat_data_flags(), run_chat_data});

}  // namespace
