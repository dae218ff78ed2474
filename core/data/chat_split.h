// One train/val/test split of chat data, shared by `ktl chat-data` (split files, preference
// pairs), `ktl sft` (train + val), `ktl eval --chat` (val or test) and DPO (through the
// preference files), so that nothing held out is ever trained on:
//   - every user turn and every assistant turn of a conversation is a key, normalised
//     (normalize_for_split); system messages are not keys (one system prompt is often shared
//     by every conversation);
//   - conversations that share a key are joined (union-find), so a group holds every
//     conversation with the same prompt or the same answer, transitively;
//   - each group goes to one split by the hash of its representative (its smallest key) and the
//     seed: deterministic, independent of file order and of the other groups. A group of more
//     than one conversation that is larger than the target size (fraction x n) of the held-out
//     split it hashes to stays in train (one giant group would otherwise be most of a held-out
//     split); such groups are counted.
// So no normalised prompt and no normalised answer appears in two splits.
// A split directory is what `ktl chat-data --split-out` writes: train.jsonl, val.jsonl,
// test.jsonl (OpenAI messages JSONL) and split.json (the counts and settings).
// Thread-safety: free functions over plain data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/data/chat_data.h"

namespace ktl {

// The text a leakage key is made of: NFKC (utf8proc), lowercased, whitespace runs collapsed to
// one space, and punctuation, symbols and spaces trimmed at both ends ("좋아요!!" and " 좋아요 "
// are one key; "좋아요. 네" keeps its inner "."). Text that is nothing but punctuation or
// symbols ("?", "^^") keeps them rather than becoming empty. Invalid UTF-8 bytes are kept as is.
std::string normalize_for_split(std::string_view text);

struct ChatSplitConfig {
  double val_fraction = 0.05;
  double test_fraction = 0.05;
  uint64_t seed = 1234;
  void validate() const;  // std::invalid_argument unless both >= 0 and their sum < 1
};

struct ChatSplit {
  std::vector<ChatConversation> train, val, test;
  int64_t conversations = 0;     // all of them
  int64_t groups = 0;            // groups after joining shared prompts and answers
  int64_t merged = 0;            // conversations that joined an earlier one's group (= n - groups)
  int64_t largest_group = 0;     // conversations in the biggest group
  int64_t oversized_groups = 0;  // groups kept in train for being larger than their split
  std::string read_report;       // format and skipped records of the file(s) read, for the CLI
  // "11823 conversations in 7641 groups (4182 merged ...); train N / val N / test N".
  std::string summary() const;
};

ChatSplit split_conversations(std::vector<ChatConversation> all, const ChatSplitConfig& cfg = {});

// A split directory (train.jsonl, and val.jsonl / test.jsonl when present) is read as is, after
// checking that no normalised prompt or answer crosses its files (std::runtime_error naming one
// that does); any other path is read with read_chat_file(path, format) and split with `cfg`.
ChatSplit load_chat_split(const std::string& path, const ChatSplitConfig& cfg = {},
                          ChatDataFormat format = ChatDataFormat::kAuto);
bool is_chat_split_dir(const std::string& path);
// Writes train.jsonl, val.jsonl, test.jsonl and split.json into `dir` (created), each file
// atomically. `source` is recorded in split.json.
void write_chat_split(const ChatSplit& s, const std::string& dir, const ChatSplitConfig& cfg,
                      const std::string& source);

// The normalised keys (user and assistant turns) of a conversation, deduplicated, each prefixed
// with its role's letter ('u' / 'a').
std::vector<std::string> conversation_split_keys(const ChatConversation& c);
// Keys found in more than one of the split's three lists (empty for a leak-free split).
std::vector<std::string> crossing_split_keys(const ChatSplit& s);

// Preference pairs built separately inside each split (build_preferences_from_qa), so training
// pairs use only train conversations (chosen and rejected alike) and val/test pairs only their
// own held-out groups.
struct PreferenceSplit {
  std::vector<PreferencePair> train, val, test;
};
PreferenceSplit build_preference_split(const ChatSplit& s, uint64_t seed = 1234);
// Where the held-out pairs of a preference file go: "prefs.jsonl" -> "prefs.val.jsonl" and
// "prefs.test.jsonl" (".jsonl" appended to a name without it).
std::string preference_split_path(const std::string& train_path, const char* split);
// The training pairs of `train_path` and, when they exist, its .val/.test siblings.
PreferenceSplit read_preference_split(const std::string& train_path);

}  // namespace ktl
