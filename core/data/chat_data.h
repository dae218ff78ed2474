// Chat data for instruction tuning: OpenAI fine-tuning JSONL
//   {"messages": [{"role": "system|user|assistant", "content": "..."}, ...]}   (multi-turn)
// and question/answer TSV with a header line (question<TAB>answer[<TAB>label], like
// chatbot-qa.tsv): one user turn and one assistant turn per row. Preference data for DPO:
//   {"prompt": "..." | "messages": [...], "chosen": "...", "rejected": "..."}
// Bad records are reported with their line numbers (all of them, up to a limit) in one
// std::runtime_error. The held-out split hashes each conversation (core/data/dataset_split.h):
// deterministic, independent of file order. Thread-safety: free functions over plain data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tokenizer/chat_template.h"

namespace ktl {

struct ChatConversation {
  std::vector<ChatMessage> messages;
  int64_t line = 0;  // 1-based line in the source file
};

struct PreferencePair {
  std::vector<ChatMessage> prompt;  // ends with a user turn
  std::string chosen, rejected;     // assistant replies
  int64_t line = 0;
};

// By extension: .tsv -> question/answer TSV, anything else -> JSONL. Each conversation must
// contain an assistant turn (something to learn). Throws on a missing file or bad records.
std::vector<ChatConversation> read_chat_file(const std::string& path);
std::vector<ChatConversation> parse_chat_jsonl(const std::string& text, const std::string& name);
std::vector<ChatConversation> parse_chat_tsv(const std::string& text, const std::string& name);

std::vector<PreferencePair> read_preference_file(const std::string& path);
std::vector<PreferencePair> parse_preference_jsonl(const std::string& text,
                                                   const std::string& name);

// Held-out split: a conversation is held out when its hash position < val_fraction.
struct ChatSplit {
  std::vector<ChatConversation> train, val;
};
ChatSplit split_conversations(std::vector<ChatConversation> all, double val_fraction = 0.1,
                              uint64_t seed = 1234);
bool is_held_out(const std::vector<ChatMessage>& messages, double val_fraction = 0.1,
                 uint64_t seed = 1234);

// A preference set from single-turn Q/A conversations: chosen = the conversation's own answer,
// rejected = the answer of another conversation picked by a seeded hash (never an identical
// answer text). Conversations without a user+assistant pair are skipped.
std::vector<PreferencePair> build_preferences_from_qa(const std::vector<ChatConversation>& qa,
                                                      uint64_t seed = 1234);
std::string preferences_to_jsonl(const std::vector<PreferencePair>& prefs);
std::string conversations_to_jsonl(const std::vector<ChatConversation>& convs);

}  // namespace ktl
