#include "core/tokenizer/chat_format.h"

#include <algorithm>

#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/spm_model_proto.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl {

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::kNone:
      return "none";
    case ChatFormat::kChatML:
      return "chatml";
    case ChatFormat::kLegacy:
      return "legacy";
    case ChatFormat::kUnknown:
      return "unknown";
  }
  return "unknown";
}

ChatFormat chat_format_of_template(const std::string& jinja) {
  if (jinja.empty()) return ChatFormat::kNone;
  for (ChatFormat f : {ChatFormat::kChatML, ChatFormat::kLegacy}) {
    const auto& known = ChatTemplate::known_jinja(f);
    if (std::find(known.begin(), known.end(), jinja) != known.end()) return f;
  }
  return ChatFormat::kUnknown;
}

namespace {

template <typename Has>
ChatFormat format_of(const Has& has_user_piece) {
  for (ChatFormat f : {ChatFormat::kChatML, ChatFormat::kLegacy}) {
    bool all = true;
    for (const auto& piece : ChatTemplate::marker_pieces(f)) all = all && has_user_piece(piece);
    if (all) return f;
  }
  return ChatFormat::kNone;
}

}  // namespace

ChatFormat chat_format_of_pieces(const std::vector<SpmPieceRecord>& pieces) {
  return format_of([&](const std::string& piece) {
    return std::any_of(pieces.begin(), pieces.end(), [&](const SpmPieceRecord& p) {
      return p.piece == piece && p.type == int(PieceType::kUserDefined);
    });
  });
}

ChatFormat chat_format_of_pieces(const Tokenizer& tok) {
  return format_of([&](const std::string& piece) {
    const int id = tok.piece_to_id(piece);
    return id != tok.unk_id() && tok.id_to_piece(id) == piece &&
           tok.type(id) == PieceType::kUserDefined;
  });
}

ChatFormatDetection detect_chat_format(const Tokenizer& tok) {
  ChatFormatDetection d;
  const ChatFormat pieces = chat_format_of_pieces(tok);
  if (!tok.chat_config_problem().empty()) {
    d.format = ChatFormat::kUnknown;
    d.source = "tokenizer_config.json";
    d.problem = tok.chat_config_problem();
    return d;
  }
  if (!tok.stored_chat_template()) {
    d.format = pieces;
    d.source = "tokenizer pieces";
    return d;
  }
  d.source = "tokenizer_config.json";
  d.format = chat_format_of_template(*tok.stored_chat_template());
  if (d.format == ChatFormat::kUnknown) {
    d.problem =
        "the checkpoint's tokenizer_config.json has a chat_template that ktl does not render "
        "(it renders ChatML and its legacy <|user|>/<|end|> format, as ktl wrote them); "
        "restore the template ktl wrote, or remove tokenizer_config.json to use the format of "
        "the tokenizer's pieces (" +
        std::string(chat_format_name(pieces)) + ")";
    return d;
  }
  if (d.format == ChatFormat::kNone) {
    d.format = pieces;  // an empty template says nothing
    d.source = "tokenizer pieces";
    return d;
  }
  for (const auto& piece : ChatTemplate::marker_pieces(d.format)) {
    const int id = tok.piece_to_id(piece);
    if (id == tok.unk_id() || tok.id_to_piece(id) != piece) {
      d.problem = std::string("the checkpoint's tokenizer_config.json has the ") +
                  chat_format_name(d.format) + " chat template but its tokenizer has no " +
                  piece + " piece";
      d.format = ChatFormat::kUnknown;
      return d;
    }
  }
  return d;
}

}  // namespace ktl
