// Chat data for instruction tuning, read as conversations (ChatConversation):
//   openai    JSON Lines, OpenAI fine-tuning/chat format, one conversation a line:
//             {"messages": [{"role": "system|developer|user|assistant|tool", "content": ...}, ...],
//              "tools": [...]}   (content a string, null or text parts; assistant tool_calls and
//             tool results are rendered as the chat template renders them for the API,
//             core/tokenizer/chat_tools.h)
//   sharegpt  {"conversations": [{"from": "human|gpt|system|tool", "value": "..."}, ...],
//              "system": "..."}   as JSON Lines or as one JSON array of such records
//   alpaca    {"instruction", "input", "output"[, "system"]}   as JSON Lines or one JSON array:
//             user = instruction, plus "\n\n" + input when input is not blank; assistant = output
//   tsv       question<TAB>answer[<TAB>label] with a header line (like chatbot-qa.tsv)
// The format is detected from the content (a leading '[' = JSON array, '{' = JSON Lines, a tab
// in the first line = TSV; the first recognised record decides openai / sharegpt / alpaca) or
// forced. System prompts are kept as the conversation's first message.
//
// Bad records are handled as the corpus reader handles bad input (core/data/corpus_reader.h):
// each is reported as an InputError with file and line (for a JSON array: the line where the
// element starts) and skipped; everything readable around it is kept. Reading throws only for a
// missing file, a format it cannot tell, or a file without a single usable conversation.
//
// Preference data for DPO: {"prompt": "..." | "messages": [...], "chosen": "...", "rejected":
// "..."}; bad records there are all reported together in one std::runtime_error.
// The train/val/test split of chat data lives in core/data/chat_split.h.
// Thread-safety: free functions over plain data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/data/corpus_reader.h"
#include "core/tokenizer/chat_template.h"

namespace ktl {

struct ChatConversation {
  std::vector<ChatMessage> messages;
  int64_t line = 0;  // 1-based line in the source file (where the record starts)
};

struct PreferencePair {
  std::vector<ChatMessage> prompt;  // ends with a user turn
  std::string chosen, rejected;     // assistant replies
  int64_t line = 0;
};

enum class ChatDataFormat { kAuto, kOpenAi, kShareGpt, kAlpaca, kTsv };
// "auto", "openai", "sharegpt", "alpaca", "tsv".
const char* chat_data_format_name(ChatDataFormat f);
// The inverse; std::invalid_argument naming the accepted names.
ChatDataFormat chat_data_format_from_name(const std::string& name);

struct ChatFile {
  std::vector<ChatConversation> conversations;
  ChatDataFormat format = ChatDataFormat::kAuto;  // as detected (or as forced)
  std::vector<InputError> errors;                 // skipped records: the first 1000
  uint64_t error_count = 0;                       // all of them
  // "N bad records skipped in NAME (first k shown):\n  NAME:LINE: why ..."; "" when none.
  std::string error_report(size_t max_lines = 20) const;
};

// Each conversation must contain a non-empty assistant turn (something to learn).
ChatFile parse_chat_data(const std::string& text, const std::string& name,
                         ChatDataFormat format = ChatDataFormat::kAuto);
ChatFile read_chat_file(const std::string& path, ChatDataFormat format = ChatDataFormat::kAuto);

std::vector<PreferencePair> read_preference_file(const std::string& path);
std::vector<PreferencePair> parse_preference_jsonl(const std::string& text,
                                                   const std::string& name);

// The prompt-hash test `ktl dpo` applies to a preference file that is not already split:
// true when the hash position of `messages` is < val_fraction. Chat data is split with
// split_conversations (core/data/chat_split.h), which also keeps shared prompts and answers on
// one side; preference files built by `ktl chat-data --build-prefs` are already split.
bool is_held_out(const std::vector<ChatMessage>& messages, double val_fraction = 0.1,
                 uint64_t seed = 1234);

// A preference set from single-turn Q/A conversations: chosen = the conversation's own answer,
// rejected = the answer of another conversation of the same list picked by a seeded hash (never
// one whose normalised text, core/data/chat_split.h, equals the chosen one). Conversations
// without a final user+assistant pair are skipped. Give it one split at a time: the pairs then
// use only that split's answers.
std::vector<PreferencePair> build_preferences_from_qa(const std::vector<ChatConversation>& qa,
                                                      uint64_t seed = 1234);
std::string preferences_to_jsonl(const std::vector<PreferencePair>& prefs);
std::string conversations_to_jsonl(const std::vector<ChatConversation>& convs);

}  // namespace ktl
