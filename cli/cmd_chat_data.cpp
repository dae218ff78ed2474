// ktl chat-data: validate chat data, write its held-out split, build a preference set.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "core/base/file_util.h"
#include "core/data/chat_data.h"

namespace {

namespace fs = std::filesystem;
using ktl::cli::Args;
using ktl::cli::UsageError;

int run_chat_data(const Args& args) {
  const double val_fraction = args.get_double("val-fraction", 0.1);
  if (val_fraction < 0 || val_fraction >= 1) throw UsageError("--val-fraction must be in [0, 1)");
  const uint64_t seed = uint64_t(args.get_int("seed", 1234));
  const auto all = ktl::read_chat_file(args.get("input"));
  size_t turns = 0;
  for (const auto& c : all) turns += c.messages.size();
  const auto split = ktl::split_conversations(all, val_fraction, seed);
  std::printf("%s: %zu conversations, %zu messages; split %zu train / %zu held-out\n",
              args.get("input").c_str(), all.size(), turns, split.train.size(), split.val.size());
  if (args.has("split-out")) {
    const fs::path dir = args.get("split-out");
    fs::create_directories(dir);
    ktl::write_file_atomic(dir / "train.jsonl", ktl::conversations_to_jsonl(split.train));
    ktl::write_file_atomic(dir / "val.jsonl", ktl::conversations_to_jsonl(split.val));
    std::printf("wrote %s/train.jsonl and val.jsonl\n", dir.c_str());
  }
  if (args.has("build-prefs")) {
    const auto prefs = ktl::build_preferences_from_qa(all, seed);
    ktl::write_file_atomic(args.get("build-prefs"), ktl::preferences_to_jsonl(prefs));
    std::printf(
        "wrote %zu preference pairs to %s (chosen: the pair's own answer; rejected: the "
        "answer to another question)\n",
        prefs.size(), args.get("build-prefs").c_str());
  }
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "chat-data",
    "Validate chat data (.jsonl messages or Q/A .tsv), split it, build a DPO preference set.",
    {{"input", "OpenAI fine-tuning .jsonl or question/answer .tsv", "", false, true},
     {"val-fraction", "held-out share (hash split, as ktl sft uses)", "0.1"},
     {"seed", "split and pairing seed (as ktl sft --seed)", "1234"},
     {"split-out", "directory for train.jsonl and val.jsonl"},
     {"build-prefs", "write a preference JSONL here (chosen = own answer, rejected = another's)"}},
    run_chat_data});

}  // namespace
