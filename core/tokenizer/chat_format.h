// Which chat format a checkpoint speaks, told from what it carries, never guessed:
//   - the chat_template of its tokenizer_config.json (Tokenizer::stored_chat_template()), when
//     the file has one: a template ktl writes or wrote (exact text) names the format; any
//     other template is kUnknown, and so is a known one whose markers the tokenizer lacks;
//   - otherwise the tokenizer's user-defined pieces: <|im_start|> and <|im_end|> -> ChatML,
//     <|system|> <|user|> <|assistant|> <|end|> -> the legacy format, none -> kNone.
// kChatML is what new chat models use (llama.cpp's built-in detection, node-llama-cpp, Ollama
// and transformers all render it as ktl does); kLegacy keeps checkpoints made before it
// working. kUnknown is refused for chat with ChatFormatDetection::problem, never rendered with
// another format. kNone is a base model: no chat markers at all.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

namespace ktl {

class Tokenizer;
struct SpmPieceRecord;

enum class ChatFormat {
  kNone,     // no template and no chat markers (a base model)
  kChatML,   // <s><|im_start|>role\n...<|im_end|>\n ... <|im_start|>assistant\n
  kLegacy,   // <s><|system|>...<|end|><|user|>...<|end|><|assistant|>
  kUnknown,  // a template ktl does not render: refused for chat
};

const char* chat_format_name(ChatFormat f);  // "none" | "chatml" | "legacy" | "unknown"

// The format of a chat_template text: the exact text of a template ktl writes (ChatML) or wrote
// (the legacy template, both its versions); "" -> kNone; anything else -> kUnknown.
ChatFormat chat_format_of_template(const std::string& jinja);

// From the pieces alone (ChatML wins when a tokenizer has both sets: only
// add_chat_markers(ck, ChatFormat::kChatML), core/model/checkpoint.h, adds the ChatML pieces to a
// legacy tokenizer).
ChatFormat chat_format_of_pieces(const std::vector<SpmPieceRecord>& pieces);
ChatFormat chat_format_of_pieces(const Tokenizer& tok);

struct ChatFormatDetection {
  ChatFormat format = ChatFormat::kNone;
  std::string source;   // "tokenizer_config.json" or "tokenizer pieces"
  std::string problem;  // kUnknown only: what is wrong, in words a user can act on
};

// The tokenizer's checkpoint format as described at the top of this file.
ChatFormatDetection detect_chat_format(const Tokenizer& tok);

}  // namespace ktl
