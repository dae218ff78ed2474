#include "core/tokenizer/chat_template.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string_view>

#include "core/tokenizer/spm_model_proto.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl {

namespace {

// The ChatML template. Every tag trims the whitespace around it, so the line breaks below are
// layout only and transformers' trim_blocks/lstrip_blocks change nothing. Tools as
// core/tokenizer/chat_tools.h renders them.
const char* const kChatMLJinja = R"J({{- bos_token -}}
{%- if tools -%}
{%- set ns = namespace(block='# Tools\n\nTo call a function, reply with only <tool_call>\n{"name": <function name>, "arguments": <arguments object>}\n</tool_call>\n\n<tools>') -%}
{%- for tool in tools -%}{%- set ns.block = ns.block + '\n' + (tool | tojson) -%}{%- endfor -%}
{{- '<|im_start|>system\n' -}}
{%- if messages and messages[0]['role'] == 'system' -%}{{- messages[0]['content'] + '\n\n' -}}{%- endif -%}
{{- ns.block + '\n</tools><|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' and not loop.first -%}
{{- raise_exception('a system message may only come first') -}}
{%- elif message['role'] == 'system' and tools -%}
{%- elif message['role'] == 'assistant' -%}
{{- '<|im_start|>assistant\n' -}}
{%- generation -%}
{{- message['content'] or '' -}}
{%- for call in message['tool_calls'] or [] -%}
{%- set args = call['function']['arguments'] -%}
{{- '<tool_call>\n{"name": "' + call['function']['name'] + '", "arguments": ' + (args if args is string else args | tojson) + '}\n</tool_call>' -}}
{%- endfor -%}
{{- '<|im_end|>' -}}
{%- endgeneration -%}
{{- '\n' -}}
{%- elif message['role'] == 'tool' -%}
{{- '<|im_start|>tool\n<tool_response>\n' + message['content'] + '\n</tool_response><|im_end|>\n' -}}
{%- elif message['role'] == 'user' or message['role'] == 'system' -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- else -%}
{{- raise_exception('unknown role ' + message['role']) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%})J";

// The legacy template as ktl wrote it from the tool-calling release on (never change it:
// checkpoints are recognised by this exact text).
const char* const kLegacyJinjaV2 =
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

// The legacy template of the first chat release (no tools).
const char* const kLegacyJinjaV1 =
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

// One piece of a rendered chat: a special token or text, and whether it is a reply target.
struct Segment {
  int special = -1;  // token id, or -1 for text
  std::string text;
  bool target = false;
};

}  // namespace

const std::vector<std::string>& ChatTemplate::marker_pieces(ChatFormat f) {
  static const std::vector<std::string> chatml = {kImStart, kImEnd};
  static const std::vector<std::string> legacy = {"<|system|>", "<|user|>", "<|assistant|>",
                                                  "<|end|>"};
  static const std::vector<std::string> none;
  if (f == ChatFormat::kChatML) return chatml;
  if (f == ChatFormat::kLegacy) return legacy;
  return none;
}

const char* ChatTemplate::end_of_turn_piece(ChatFormat f) {
  return f == ChatFormat::kLegacy ? "<|end|>" : kImEnd;
}

const std::vector<std::string>& ChatTemplate::known_jinja(ChatFormat f) {
  static const std::vector<std::string> chatml = {kChatMLJinja};
  static const std::vector<std::string> legacy = {kLegacyJinjaV2, kLegacyJinjaV1};
  static const std::vector<std::string> none;
  if (f == ChatFormat::kChatML) return chatml;
  if (f == ChatFormat::kLegacy) return legacy;
  return none;
}

const std::string& ChatTemplate::jinja(ChatFormat f) {
  if (f != ChatFormat::kChatML && f != ChatFormat::kLegacy)
    throw std::invalid_argument(std::string("no template for chat format ") + chat_format_name(f));
  return known_jinja(f).front();
}

std::string ChatTemplate::tokenizer_config_json(ChatFormat f,
                                                const std::vector<SpmPieceRecord>& pieces) {
  using ojson = nlohmann::ordered_json;
  ojson j = ojson::object();
  j["tokenizer_class"] = "LlamaTokenizer";
  j["bos_token"] = "<s>";
  j["eos_token"] = "</s>";
  j["unk_token"] = "<unk>";
  j["pad_token"] = "<pad>";
  j["add_bos_token"] = true;
  j["add_eos_token"] = false;
  // SentencePiece's "▁" after every special token, as ktl and llama.cpp tokenize a chat.
  j["legacy"] = true;
  j["clean_up_tokenization_spaces"] = false;
  ojson added = ojson::object();
  auto add = [&](size_t id, const std::string& content) {
    added[std::to_string(id)] = {{"content", content}, {"lstrip", false}, {"normalized", false},
                                 {"rstrip", false},    {"single_word", false}, {"special", true}};
  };
  const std::vector<std::string>& markers = marker_pieces(f);
  for (size_t id = 0; id < pieces.size(); ++id) {
    const SpmPieceRecord& p = pieces[id];
    const bool marker = p.type == int(PieceType::kUserDefined) &&
                        std::find(markers.begin(), markers.end(), p.piece) != markers.end();
    if (p.type == int(PieceType::kControl) || p.type == int(PieceType::kUnknown) || marker)
      add(id, p.piece);
  }
  j["added_tokens_decoder"] = added;
  j["additional_special_tokens"] = markers;
  if (f == ChatFormat::kLegacy) j["end_of_turn_token"] = end_of_turn_piece(f);
  j["chat_template"] = jinja(f);
  return j.dump(2) + "\n";
}

std::optional<ChatTemplate> ChatTemplate::for_tokenizer(std::shared_ptr<const Tokenizer> tok,
                                                        ChatFormat f) {
  if (!tok || (f != ChatFormat::kChatML && f != ChatFormat::kLegacy)) return std::nullopt;
  ChatTemplate t;
  t.format_ = f;
  for (const auto& piece : marker_pieces(f)) {
    const int id = tok->piece_to_id(piece);
    if (id == tok->unk_id() || tok->id_to_piece(id) != piece) return std::nullopt;
    t.marker_ids_.push_back(id);
  }
  t.end_id_ = tok->piece_to_id(end_of_turn_piece(f));
  t.tok_ = std::move(tok);
  return t;
}

std::optional<ChatTemplate> ChatTemplate::for_tokenizer(std::shared_ptr<const Tokenizer> tok) {
  if (!tok) return std::nullopt;
  const ChatFormatDetection d = detect_chat_format(*tok);
  if (d.format == ChatFormat::kUnknown) throw ChatFormatError(d.problem);
  if (d.format == ChatFormat::kNone) return std::nullopt;
  return for_tokenizer(std::move(tok), d.format);
}

ChatTemplate ChatTemplate::require(std::shared_ptr<const Tokenizer> tok) {
  auto t = for_tokenizer(std::move(tok));
  if (!t)
    throw std::runtime_error(
        "the tokenizer has no chat format (neither the ChatML pieces <|im_start|> <|im_end|> "
        "nor the legacy markers); `ktl sft` adds <|im_start|> and <|im_end|> by growing the "
        "vocabulary (or retrain with ktl train-tokenizer)");
  return *t;
}

void validate_chat_messages(const std::vector<ChatMessage>& messages, bool allow_tool) {
  if (messages.empty()) throw std::invalid_argument("a conversation needs at least one message");
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string where = "message " + std::to_string(i + 1) + ": ";
    if (m.role != "system" && m.role != "user" && m.role != "assistant" &&
        !(allow_tool && m.role == "tool"))
      throw std::invalid_argument(where + "unknown role '" + m.role + "' (expected system, user" +
                                  (allow_tool ? ", assistant or tool)" : " or assistant)"));
    if (m.role == "system" && i != 0)
      throw std::invalid_argument(where + "a system message may only come first");
    for (ChatFormat f : {ChatFormat::kChatML, ChatFormat::kLegacy})
      for (const auto& marker : ChatTemplate::marker_pieces(f))
        if (m.content.find(marker) != std::string::npos)
          throw std::invalid_argument(where + "content contains the reserved marker " + marker);
  }
}

namespace {

// The conversation as segments; the text of all segments is render_text().
std::vector<Segment> chat_segments(ChatFormat f, const std::vector<int>& marker_ids, int bos,
                                   const std::vector<ChatMessage>& messages,
                                   bool add_generation_prompt) {
  std::vector<Segment> s;
  auto special = [&](int id, bool target) { s.push_back({id, "", target}); };
  auto text = [&](std::string t, bool target) { s.push_back({-1, std::move(t), target}); };
  special(bos, false);
  if (f == ChatFormat::kChatML) {
    const int start = marker_ids[0], end = marker_ids[1];
    for (const auto& m : messages) {
      const bool target = m.role == "assistant";
      special(start, false);
      text(m.role + "\n", false);
      text(m.content, target);
      special(end, target);  // the assistant learns to end its turn
      text("\n", false);
    }
    if (add_generation_prompt) {
      special(start, false);
      text("assistant\n", false);
    }
  } else {
    auto role_id = [&](const std::string& role) {
      return role == "system" ? marker_ids[0] : role == "user" ? marker_ids[1] : marker_ids[2];
    };
    for (const auto& m : messages) {
      const bool target = m.role == "assistant";
      special(role_id(m.role), false);
      text(m.content, target);
      special(marker_ids[3], target);
    }
    if (add_generation_prompt) special(marker_ids[2], false);
  }
  return s;
}

}  // namespace

RenderedChat ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) const {
  validate_chat_messages(messages, format_ == ChatFormat::kChatML);
  const std::vector<Segment> segs =
      chat_segments(format_, marker_ids_, tok_->bos_id(), messages, add_generation_prompt);
  RenderedChat r;
  auto push = [&](int id, bool target) {
    r.ids.push_back(id);
    r.assistant_mask.push_back(target ? 1 : 0);
  };
  for (size_t i = 0; i < segs.size();) {
    if (segs[i].special >= 0) {
      push(segs[i].special, segs[i].target);
      ++i;
      continue;
    }
    // One stretch of text up to the next special token, encoded as one piece (as llama.cpp
    // does); a token is a target when its bytes overlap target text. SentencePiece's leading
    // "▁" is byte 0 of the encoded form, so text offsets start at 1; target text at the start
    // of the stretch owns that "▁" too.
    std::string text;
    std::vector<std::pair<size_t, size_t>> targets;  // [begin, end) in " " + text
    for (; i < segs.size() && segs[i].special < 0; ++i) {
      if (segs[i].target && !segs[i].text.empty())
        targets.emplace_back(text.empty() ? 0 : 1 + text.size(),
                             1 + text.size() + segs[i].text.size());
      text += segs[i].text;
    }
    if (text.empty()) continue;
    size_t pos = 0;
    for (int id : tok_->encode(text)) {
      const size_t len = tok_->token_bytes(id).size();
      bool target = false;
      for (const auto& [b, e] : targets) target = target || (pos < e && pos + len > b);
      push(id, target);
      pos += len;
    }
  }
  return r;
}

std::string ChatTemplate::render_text(ChatFormat f, const std::vector<ChatMessage>& messages,
                                      bool add_generation_prompt) {
  std::string out;
  if (f == ChatFormat::kChatML) {
    out = "<s>";
    for (const auto& m : messages)
      out += std::string(kImStart) + m.role + "\n" + m.content + kImEnd + "\n";
    if (add_generation_prompt) out += std::string(kImStart) + "assistant\n";
  } else if (f == ChatFormat::kLegacy) {
    for (const auto& m : messages) out += "<|" + m.role + "|>" + m.content + "<|end|>";
    if (add_generation_prompt) out += "<|assistant|>";
  } else {
    throw std::invalid_argument(std::string("no template for chat format ") + chat_format_name(f));
  }
  return out;
}

std::vector<int> ChatTemplate::tokenize_text(const std::string& text) const {
  std::vector<std::pair<std::string, int>> specials = {{"<s>", tok_->bos_id()},
                                                       {"</s>", tok_->eos_id()}};
  const auto& markers = marker_pieces(format_);
  for (size_t k = 0; k < markers.size(); ++k) specials.emplace_back(markers[k], marker_ids_[k]);
  std::vector<int> ids;
  size_t pos = 0, run = 0;  // run: start of the text since the last special token
  auto flush = [&](size_t end) {
    if (end > run)
      for (int id : tok_->encode(std::string_view(text).substr(run, end - run))) ids.push_back(id);
  };
  while (pos < text.size()) {
    bool matched = false;
    for (const auto& [piece, id] : specials) {
      if (text.compare(pos, piece.size(), piece) == 0) {
        flush(pos);
        ids.push_back(id);
        pos += piece.size();
        run = pos;
        matched = true;
        break;
      }
    }
    if (!matched) ++pos;
  }
  flush(text.size());
  return ids;
}

}  // namespace ktl
