#include "core/tokenizer/chat_template.h"

#include <stdexcept>

#include "core/tokenizer/tokenizer.h"

namespace ktl {

const std::vector<std::string>& ChatTemplate::marker_pieces() {
  static const std::vector<std::string> k = {"<|system|>", "<|user|>", "<|assistant|>", "<|end|>"};
  return k;
}

const std::string& ChatTemplate::jinja() {
  // Tools as core/tokenizer/chat_tools.h renders them.
  static const std::string k =
      "{%- if tools -%}"
      "{%- set ns = namespace(block='# Tools\\n\\nTo call a function, reply with only "
      "<tool_call>\\n{\"name\": <function name>, \"arguments\": <arguments object>}\\n"
      "</tool_call>\\n\\n<tools>') -%}"
      "{%- for tool in tools -%}{%- set ns.block = ns.block + '\\n' + (tool | tojson) -%}"
      "{%- endfor -%}"
      "{%- if messages[0]['role'] == 'system' -%}"
      "{{ '<|system|>' + messages[0]['content'] + '\\n\\n' + ns.block + '\\n</tools><|end|>' }}"
      "{%- else -%}{{ '<|system|>' + ns.block + '\\n</tools><|end|>' }}{%- endif -%}"
      "{%- endif -%}"
      "{%- for message in messages -%}"
      "{%- if tools and loop.first and message['role'] == 'system' -%}"
      "{%- elif message['role'] == 'tool' -%}"
      "{{ '<|user|><tool_response>\\n' + message['content'] + '\\n</tool_response><|end|>' }}"
      "{%- elif message['role'] == 'assistant' and message['tool_calls'] -%}"
      "{{ '<|assistant|>' + (message['content'] or '') }}"
      "{%- for call in message['tool_calls'] -%}"
      "{%- set args = call['function']['arguments'] -%}"
      "{{ '<tool_call>\\n{\"name\": \"' + call['function']['name'] + '\", \"arguments\": ' + "
      "(args if args is string else args | tojson) + '}\\n</tool_call>' }}"
      "{%- endfor -%}{{ '<|end|>' }}"
      "{%- else -%}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
      "{%- endif -%}"
      "{%- endfor -%}"
      "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}";
  return k;
}

namespace {

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string ChatTemplate::tokenizer_config_json() {
  std::string out = "{\n  \"tokenizer_class\": \"LlamaTokenizer\",\n";
  out += "  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n";
  out += "  \"pad_token\": \"<pad>\",\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n";
  out += "  \"additional_special_tokens\": [";
  for (size_t i = 0; i < marker_pieces().size(); ++i)
    out += std::string(i ? ", " : "") + "\"" + marker_pieces()[i] + "\"";
  out += "],\n  \"end_of_turn_token\": \"<|end|>\",\n";
  out += "  \"chat_template\": \"" + json_escape(jinja()) + "\"\n}\n";
  return out;
}

std::optional<ChatTemplate> ChatTemplate::for_tokenizer(std::shared_ptr<const Tokenizer> tok) {
  if (!tok) return std::nullopt;
  ChatTemplate t;
  int* ids[] = {&t.system_id_, &t.user_id_, &t.assistant_id_, &t.end_id_};
  for (size_t i = 0; i < marker_pieces().size(); ++i) {
    const int id = tok->piece_to_id(marker_pieces()[i]);
    if (id == tok->unk_id() || tok->id_to_piece(id) != marker_pieces()[i]) return std::nullopt;
    *ids[i] = id;
  }
  t.tok_ = std::move(tok);
  return t;
}

ChatTemplate ChatTemplate::require(std::shared_ptr<const Tokenizer> tok) {
  auto t = for_tokenizer(std::move(tok));
  if (!t)
    throw std::runtime_error(
        "the tokenizer lacks the chat markers <|system|> <|user|> <|assistant|> <|end|>; "
        "`ktl sft` adds them by growing the vocabulary (or retrain with ktl train-tokenizer)");
  return *t;
}

int ChatTemplate::role_id(const std::string& role) const {
  if (role == "system") return system_id_;
  if (role == "user") return user_id_;
  if (role == "assistant") return assistant_id_;
  return -1;
}

void validate_chat_messages(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) throw std::invalid_argument("a conversation needs at least one message");
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string where = "message " + std::to_string(i + 1) + ": ";
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
      throw std::invalid_argument(where + "unknown role '" + m.role +
                                  "' (expected system, user or assistant)");
    if (m.role == "system" && i != 0)
      throw std::invalid_argument(where + "a system message may only come first");
    for (const auto& marker : ChatTemplate::marker_pieces())
      if (m.content.find(marker) != std::string::npos)
        throw std::invalid_argument(where + "content contains the reserved marker " + marker);
  }
}

RenderedChat ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) const {
  validate_chat_messages(messages);
  RenderedChat r;
  auto push = [&](int id, bool target) {
    r.ids.push_back(id);
    r.assistant_mask.push_back(target ? 1 : 0);
  };
  push(tok_->bos_id(), false);
  for (const auto& m : messages) {
    const bool target = m.role == "assistant";
    push(role_id(m.role), false);
    for (int id : tok_->encode(m.content)) push(id, target);
    push(end_id_, target);  // the assistant learns to end its turn
  }
  if (add_generation_prompt) push(assistant_id_, false);
  return r;
}

std::string ChatTemplate::render_text(const std::vector<ChatMessage>& messages,
                                      bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) out += "<|" + m.role + "|>" + m.content + "<|end|>";
  if (add_generation_prompt) out += "<|assistant|>";
  return out;
}

}  // namespace ktl
