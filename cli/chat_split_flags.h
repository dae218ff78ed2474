// The flags that name chat data's format and its one train/val/test split
// (core/data/chat_split.h), shared by chat-data, sft and eval --chat so that every command
// computes the same split from the same file. Not thread-safe (CLI start-up).
#pragma once

#include <stdexcept>
#include <vector>

#include "cli/command.h"
#include "core/data/chat_data.h"
#include "core/data/chat_split.h"

namespace ktl::cli {

inline std::vector<Flag> chat_split_flags() {
  return {
      {"format", "chat data format: auto (from the content), openai, sharegpt, alpaca, tsv",
       "auto"},
      {"val-fraction", "validation share of the prompt/answer groups (hashed)", "0.05"},
      {"test-fraction", "test share of the prompt/answer groups (hashed)", "0.05"},
      {"split-seed", "seed of the train/val/test hash (the same in chat-data, sft, eval)", "1234"}};
}

inline ChatSplitConfig chat_split_config(const Args& args) {
  ChatSplitConfig c;
  c.val_fraction = args.get_double("val-fraction", c.val_fraction);
  c.test_fraction = args.get_double("test-fraction", c.test_fraction);
  c.seed = uint64_t(args.get_int("split-seed", int64_t(c.seed)));
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--val-fraction / --test-fraction: ") + e.what());
  }
  return c;
}

inline ChatDataFormat chat_data_format(const Args& args) {
  try {
    return chat_data_format_from_name(args.get("format", "auto"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--format: ") + e.what());
  }
}

}  // namespace ktl::cli
