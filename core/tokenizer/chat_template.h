// ktl's chat formats, defined here and nowhere else (which one a checkpoint uses:
// core/tokenizer/chat_format.h).
//
// ChatML, the format of new chat models:
//   <s><|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n
//   <|im_start|>assistant\n{assistant}<|im_end|>\n ... <|im_start|>assistant\n
// with tool results as `tool` turns (<|im_start|>tool\n<tool_response>\n{result}\n
// </tool_response><|im_end|>\n) and calls in the assistant's turn (core/tokenizer/chat_tools.h).
// <|im_end|> is the end-of-turn token. llama.cpp's built-in detection (llama-chat.cpp:
// a template containing "<|im_start|>" is LLM_CHAT_TEMPLATE_CHATML), node-llama-cpp
// (ChatMLChatWrapper), Ollama's template matching and transformers' Jinja all render it alike.
//
// The legacy format of checkpoints made before it (kept so they still work):
//   <s><|system|>{system}<|end|><|user|>{user}<|end|><|assistant|>{assistant}<|end|>...
// ending with "<|assistant|>" for generation; <|end|> ends a turn.
//
// The markers are SentencePiece user-defined pieces (never split; new tokenizers reserve the
// ChatML pair as ids 4 and 5, older checkpoints get them by growing the vocabulary,
// core/model/checkpoint.h add_chat_markers). Ids: the rendered text split at the special pieces
// (and <s>), each piece of text between them encoded on its own with SentencePiece's leading
// "▁", which is how llama.cpp tokenizes a rendered chat (it adds the space prefix after each
// special token) and how transformers' slow LlamaTokenizer (legacy=True) does; tokenize_text()
// is that rule, render() builds the same ids turn by turn.
// The Jinja form (jinja()) is what tokenizer_config.json and GGUF `tokenizer.chat_template`
// carry; for ChatML it renders {{ bos_token }} and marks the assistant's replies with
// {% generation %} (transformers' return_assistant_tokens_mask).
// Thread-safety: immutable after construction; all methods const.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/tokenizer/chat_format.h"

namespace ktl {

class Tokenizer;
struct SpmPieceRecord;

struct ChatMessage {
  std::string role;  // "system" (first message only), "user", "assistant"; ChatML also "tool"
  std::string content;
};

struct RenderedChat {
  std::vector<int> ids;
  // 1 where the token is an assistant reply token (content and its end-of-turn token): the SFT
  // targets; the tokens {% generation %} covers in the Jinja form.
  std::vector<uint8_t> assistant_mask;
};

// A checkpoint whose chat template ktl cannot render (ChatFormat::kUnknown); what() names the
// problem. The server answers it with a 4xx.
class ChatFormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ChatTemplate {
 public:
  // The pieces a format needs: ChatML <|im_start|> <|im_end|> (reserved by every new ktl
  // tokenizer); legacy <|system|> <|user|> <|assistant|> <|end|>.
  static const std::vector<std::string>& marker_pieces(ChatFormat f = ChatFormat::kChatML);
  static const char* end_of_turn_piece(ChatFormat f = ChatFormat::kChatML);
  static constexpr const char* kImStart = "<|im_start|>";
  static constexpr const char* kImEnd = "<|im_end|>";
  // The template in Jinja (Hugging Face chat_template / GGUF tokenizer.chat_template).
  static const std::string& jinja(ChatFormat f = ChatFormat::kChatML);
  // Every template text ktl ever wrote for `f` (the current one first), for recognition.
  static const std::vector<std::string>& known_jinja(ChatFormat f);
  // tokenizer_config.json for Hugging Face (written next to tokenizer.model in checkpoints):
  // the template, bos/eos/unk/pad, added_tokens_decoder with the ids of the special pieces.
  static std::string tokenizer_config_json(ChatFormat f, const std::vector<SpmPieceRecord>& pieces);

  // The template of the tokenizer's checkpoint (detect_chat_format): nullopt for a base model
  // (kNone); throws ChatFormatError for a template ktl cannot render.
  static std::optional<ChatTemplate> for_tokenizer(std::shared_ptr<const Tokenizer> tok);
  // `f` over this tokenizer; nullopt when it lacks one of f's markers.
  static std::optional<ChatTemplate> for_tokenizer(std::shared_ptr<const Tokenizer> tok,
                                                   ChatFormat f);
  // As for_tokenizer, but a base model throws too (std::runtime_error saying how to add the
  // markers).
  static ChatTemplate require(std::shared_ptr<const Tokenizer> tok);

  // Validates roles (std::invalid_argument: "message 2: unknown role 'bot'") and that no content
  // contains a marker. add_generation_prompt opens an assistant turn (for inference).
  RenderedChat render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // The same conversation as text: what jinja(f) renders (ChatML with its leading <s>, the
  // legacy form without it, as its template has none).
  static std::string render_text(ChatFormat f, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt);
  // Ids of a rendered text by the rule at the top of this file (<s>, </s> and f's markers are
  // their ids; each stretch of text between them encoded on its own).
  std::vector<int> tokenize_text(const std::string& text) const;

  ChatFormat format() const { return format_; }
  int end_of_turn_id() const { return end_id_; }

 private:
  std::shared_ptr<const Tokenizer> tok_;
  ChatFormat format_ = ChatFormat::kChatML;
  std::vector<int> marker_ids_;  // marker_pieces(format_) in order
  int end_id_ = -1;
};

// Throws std::invalid_argument naming the message index for a bad role or order, or a marker
// of either format inside a content. Shared by render() and the chat data reader; the `tool`
// role only where `allow_tool` (ChatML).
void validate_chat_messages(const std::vector<ChatMessage>& messages, bool allow_tool = false);

}  // namespace ktl
