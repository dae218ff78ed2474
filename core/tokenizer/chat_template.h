// The one chat format of ktl, defined here and nowhere else. A conversation renders as
//   <s><|system|>{system}<|end|><|user|>{user}<|end|><|assistant|>{assistant}<|end|>...
// and a prompt for generation ends with "<|assistant|>". The markers are SentencePiece
// user-defined pieces (never split; new tokenizers reserve them, older checkpoints get them by
// growing the vocabulary, core/model/vocab_growth.h). Each content is encoded on its own, so a
// leading "▁" follows every marker, exactly as llama.cpp tokenizes the rendered text (it adds
// the space prefix after each special token). <|end|> is the end-of-turn token.
// The Jinja form (jinja()) is what tokenizer_config.json and GGUF `tokenizer.chat_template`
// carry, so Hugging Face, llama.cpp and Ollama format chats the same way.
// Thread-safety: immutable after construction; all methods const.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ktl {

class Tokenizer;

struct ChatMessage {
  std::string role;  // "system" (first message only), "user" or "assistant"
  std::string content;
};

struct RenderedChat {
  std::vector<int> ids;
  // 1 where the token is an assistant reply token (content and its <|end|>): the SFT targets.
  std::vector<uint8_t> assistant_mask;
};

class ChatTemplate {
 public:
  // <|system|>, <|user|>, <|assistant|>, <|end|>: reserved by every new ktl tokenizer.
  static const std::vector<std::string>& marker_pieces();
  static constexpr const char* kEndOfTurn = "<|end|>";
  // The template in Jinja (Hugging Face chat_template / GGUF tokenizer.chat_template).
  static const std::string& jinja();
  // tokenizer_config.json written next to tokenizer.model in checkpoints.
  static std::string tokenizer_config_json();

  // The template for this tokenizer; nullopt when it lacks a marker (an older checkpoint).
  static std::optional<ChatTemplate> for_tokenizer(std::shared_ptr<const Tokenizer> tok);
  // As for_tokenizer, but throws std::runtime_error saying how to add the markers.
  static ChatTemplate require(std::shared_ptr<const Tokenizer> tok);

  // Validates roles (std::invalid_argument: "message 2: unknown role 'bot'") and that no content
  // contains a marker. add_generation_prompt appends <|assistant|> (for inference).
  RenderedChat render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // The same conversation as text (what jinja() produces), for logs and tests.
  static std::string render_text(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt);

  int end_of_turn_id() const { return end_id_; }
  int role_id(const std::string& role) const;  // -1 when not a role

 private:
  std::shared_ptr<const Tokenizer> tok_;
  int system_id_ = -1, user_id_ = -1, assistant_id_ = -1, end_id_ = -1;
};

// Throws std::invalid_argument naming the message index for a bad role order or a marker
// inside a content. Shared by render() and the chat data reader.
void validate_chat_messages(const std::vector<ChatMessage>& messages);

}  // namespace ktl
