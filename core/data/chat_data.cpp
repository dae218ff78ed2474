#include "core/data/chat_data.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/data/chat_split.h"
#include "core/data/dataset_split.h"
#include "core/tokenizer/chat_tools.h"

namespace ktl {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;  // records keep their key order (tool schemas, arguments)

constexpr size_t kMaxKeptErrors = 1000;

// Collects per-line errors and throws them together (preference files).
class ErrorList {
 public:
  explicit ErrorList(std::string name) : name_(std::move(name)) {}
  void add(int64_t line, const std::string& msg) {
    if (++count_ <= 20) text_ += "\n  " + name_ + ":" + std::to_string(line) + ": " + msg;
  }
  void throw_if_any() const {
    if (count_ == 0) return;
    std::string head = std::to_string(count_) + " bad record" + (count_ > 1 ? "s" : "") + " in " +
                       name_ + (count_ > 20 ? " (first 20 shown)" : "") + ":";
    throw std::runtime_error(head + text_);
  }

 private:
  std::string name_, text_;
  int64_t count_ = 0;
};

template <typename F>
void for_each_line(const std::string& text, F f) {
  int64_t line = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string l = text.substr(pos, nl - pos);
    if (!l.empty() && l.back() == '\r') l.pop_back();
    f(++line, l);
    pos = nl + 1;
  }
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

template <typename J>
std::string required_string(const J& j, const char* key) {
  if (!j.is_object() || !j.contains(key))
    throw std::invalid_argument(std::string("missing \"") + key + "\"");
  if (!j[key].is_string())
    throw std::invalid_argument(std::string("\"") + key + "\" must be a string");
  return j[key].template get<std::string>();
}

template <typename J>
std::string optional_string(const J& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  if (!j[key].is_string())
    throw std::invalid_argument(std::string("\"") + key + "\" must be a string");
  return j[key].template get<std::string>();
}

std::vector<ChatMessage> parse_messages(const json& arr) {
  if (!arr.is_array()) throw std::invalid_argument("\"messages\" must be an array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_object())
      throw std::invalid_argument("message " + std::to_string(i + 1) + " is not an object");
    try {
      out.push_back({required_string(arr[i], "role"), required_string(arr[i], "content")});
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("message " + std::to_string(i + 1) + ": " + e.what());
    }
  }
  validate_chat_messages(out);
  return out;
}

// The template's checks (roles, order, no marker inside a content). A tool result is a `tool`
// turn where the chat format has that role (render_tool_messages decides); it is checked like
// the user turn it stands in for, and the template renders or refuses it when training.
void validate_conversation(const std::vector<ChatMessage>& messages) {
  std::vector<ChatMessage> m = messages;
  for (auto& x : m)
    if (x.role == "tool") x.role = "user";
  validate_chat_messages(m);
}

bool has_assistant(const std::vector<ChatMessage>& m) {
  for (const auto& x : m)
    if (x.role == "assistant" && !x.content.empty()) return true;
  return false;
}

json messages_json(const std::vector<ChatMessage>& ms) {
  json arr = json::array();
  for (const auto& m : ms) arr.push_back({{"role", m.role}, {"content", m.content}});
  return arr;
}

// ---- record formats -------------------------------------------------------------------------

// "content": a string, null / missing (an assistant that only calls tools), or text parts
// [{"type": "text", "text": "..."}] (concatenated), as the chat API accepts them.
std::string openai_content(const ojson& m) {
  if (!m.contains("content") || m["content"].is_null()) return "";
  const ojson& c = m["content"];
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array())
    throw std::invalid_argument("\"content\" must be a string, null or an array of text parts");
  std::string out;
  for (const auto& part : c) {
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
        !part.contains("text") || !part["text"].is_string())
      throw std::invalid_argument("only text content parts ({\"type\": \"text\", ...}) are read");
    out += part["text"].get<std::string>();
  }
  return out;
}

std::vector<ChatToolCall> openai_tool_calls(const ojson& m) {
  std::vector<ChatToolCall> out;
  if (!m.contains("tool_calls") || m["tool_calls"].is_null()) return out;
  if (!m["tool_calls"].is_array()) throw std::invalid_argument("\"tool_calls\" must be an array");
  for (const auto& c : m["tool_calls"]) {
    if (!c.is_object() || !c.contains("function") || !c["function"].is_object())
      throw std::invalid_argument("each tool call needs a \"function\" object");
    const ojson& fn = c["function"];
    ChatToolCall call;
    call.name = required_string(fn, "name");
    if (fn.contains("arguments") && fn["arguments"].is_string())
      call.arguments = fn["arguments"].get<std::string>();
    else if (fn.contains("arguments") && fn["arguments"].is_object())
      call.arguments = python_json(fn["arguments"].dump());
    else
      call.arguments = "{}";
    out.push_back(std::move(call));
  }
  return out;
}

std::vector<ChatToolSpec> openai_tools(const ojson& j) {
  std::vector<ChatToolSpec> out;
  if (!j.contains("tools") || j["tools"].is_null()) return out;
  if (!j["tools"].is_array()) throw std::invalid_argument("\"tools\" must be an array");
  for (const auto& t : j["tools"]) {
    if (!t.is_object() || !t.contains("function") || !t["function"].is_object())
      throw std::invalid_argument("each tool needs a \"function\" object");
    const ojson& fn = t["function"];
    ChatToolSpec s;
    s.name = required_string(fn, "name");
    s.description = optional_string(fn, "description");
    if (fn.contains("parameters") && !fn["parameters"].is_object())
      throw std::invalid_argument("tool " + s.name + ": \"parameters\" must be an object");
    s.parameters = fn.contains("parameters") ? fn["parameters"].dump() : "{\"type\":\"object\"}";
    out.push_back(std::move(s));
  }
  return out;
}

// Messages with tool turns or a tool list are rendered as the chat API renders them
// (render_tool_messages: tools into the system turn, calls into the assistant's content, tool
// results into user turns), so training sees what serving will show the model.
std::vector<ChatMessage> to_template_messages(const std::vector<ChatApiMessage>& api,
                                              const std::vector<ChatToolSpec>& tools) {
  bool tool_turns = !tools.empty();
  for (const auto& m : api) tool_turns = tool_turns || m.role == "tool" || !m.tool_calls.empty();
  if (tool_turns) return render_tool_messages(api, tools);
  std::vector<ChatMessage> out;
  for (const auto& m : api) out.push_back({m.role, m.content});
  return out;
}

std::vector<ChatMessage> openai_record(const ojson& j) {
  if (!j.contains("messages")) throw std::invalid_argument("expected {\"messages\": [...]}");
  const ojson& arr = j["messages"];
  if (!arr.is_array()) throw std::invalid_argument("\"messages\" must be an array");
  std::vector<ChatApiMessage> api;
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string where = "message " + std::to_string(i + 1) + ": ";
    if (!arr[i].is_object()) throw std::invalid_argument(where + "not an object");
    try {
      ChatApiMessage m;
      m.role = required_string(arr[i], "role");
      if (m.role == "developer") m.role = "system";
      if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool")
        throw std::invalid_argument("unknown role '" + m.role +
                                    "' (expected system, developer, user, assistant or tool)");
      m.content = openai_content(arr[i]);
      if (m.role == "assistant") m.tool_calls = openai_tool_calls(arr[i]);
      api.push_back(std::move(m));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + e.what());
    }
  }
  return to_template_messages(api, openai_tools(j));
}

std::vector<ChatMessage> sharegpt_record(const ojson& j) {
  if (!j.contains("conversations"))
    throw std::invalid_argument("expected {\"conversations\": [...]}");
  const ojson& arr = j["conversations"];
  if (!arr.is_array()) throw std::invalid_argument("\"conversations\" must be an array");
  std::vector<ChatApiMessage> api;
  const std::string system = j.is_object() ? optional_string(j, "system") : "";
  if (!system.empty()) api.push_back({"system", system, {}});
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string where = "turn " + std::to_string(i + 1) + ": ";
    if (!arr[i].is_object()) throw std::invalid_argument(where + "not an object");
    try {
      const std::string from = required_string(arr[i], "from");
      std::string role;
      if (from == "human" || from == "user")
        role = "user";
      else if (from == "gpt" || from == "assistant" || from == "model" || from == "chatgpt")
        role = "assistant";
      else if (from == "system")
        role = "system";
      else if (from == "tool" || from == "observation" || from == "function_response")
        role = "tool";
      else
        throw std::invalid_argument("unknown \"from\" '" + from +
                                    "' (expected human, gpt, system or tool)");
      api.push_back({role, required_string(arr[i], "value"), {}});
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + e.what());
    }
  }
  return to_template_messages(api, {});
}

std::vector<ChatMessage> alpaca_record(const ojson& j) {
  const std::string instruction = required_string(j, "instruction");
  const std::string input = optional_string(j, "input");
  const std::string output = required_string(j, "output");
  const std::string system = optional_string(j, "system");
  if (blank(instruction)) throw std::invalid_argument("empty \"instruction\"");
  std::vector<ChatMessage> out;
  if (!system.empty()) out.push_back({"system", system});
  out.push_back({"user", blank(input) ? instruction : instruction + "\n\n" + input});
  out.push_back({"assistant", output});
  return out;
}

ChatDataFormat record_format(const ojson& j) {
  if (!j.is_object()) return ChatDataFormat::kAuto;
  if (j.contains("messages")) return ChatDataFormat::kOpenAi;
  if (j.contains("conversations")) return ChatDataFormat::kShareGpt;
  if (j.contains("instruction") && j.contains("output")) return ChatDataFormat::kAlpaca;
  return ChatDataFormat::kAuto;
}

const char* record_shape(ChatDataFormat f) {
  switch (f) {
    case ChatDataFormat::kOpenAi:
      return "{\"messages\": [...]}";
    case ChatDataFormat::kShareGpt:
      return "{\"conversations\": [...]}";
    case ChatDataFormat::kAlpaca:
      return "{\"instruction\", \"input\", \"output\"}";
    default:
      return "a messages, conversations or instruction/output record";
  }
}

// Reads records one at a time, fixing the file's format on the first recognised record.
class RecordReader {
 public:
  RecordReader(ChatFile* out, std::string name) : out_(out), name_(std::move(name)) {}

  void error(int64_t line, const std::string& msg) {
    ++out_->error_count;
    if (out_->errors.size() < kMaxKeptErrors) out_->errors.push_back({name_, long(line), msg});
  }

  void record(int64_t line, const std::string& text) {
    try {
      const ojson j = ojson::parse(text);
      if (!j.is_object()) throw std::invalid_argument("expected a JSON object");
      if (out_->format == ChatDataFormat::kAuto) {
        const ChatDataFormat f = record_format(j);
        if (f == ChatDataFormat::kAuto)
          throw std::invalid_argument(std::string("expected ") + record_shape(f));
        out_->format = f;
      }
      if (record_format(j) != out_->format)
        throw std::invalid_argument(std::string("expected ") + record_shape(out_->format) +
                                    " (the file's format: " + chat_data_format_name(out_->format) +
                                    ")");
      std::vector<ChatMessage> m;
      switch (out_->format) {
        case ChatDataFormat::kOpenAi:
          m = openai_record(j);
          break;
        case ChatDataFormat::kShareGpt:
          m = sharegpt_record(j);
          break;
        default:
          m = alpaca_record(j);
          break;
      }
      validate_conversation(m);
      if (!has_assistant(m)) throw std::invalid_argument("no assistant reply to learn");
      out_->conversations.push_back({std::move(m), line});
    } catch (const ojson::exception& e) {
      error(line, std::string("invalid JSON: ") + e.what());
    } catch (const std::invalid_argument& e) {
      error(line, e.what());
    }
  }

 private:
  ChatFile* out_;
  std::string name_;
};

void read_json_lines(const std::string& text, RecordReader& r) {
  for_each_line(text, [&](int64_t line, const std::string& l) {
    if (!blank(l)) r.record(line, l);
  });
}

// A whole-file JSON array of records: each element is cut out by a small scanner (strings,
// escapes and nesting) so that it is parsed on its own and reported with the line it starts on;
// a bad element is skipped, broken structure skips the rest of the file.
void read_json_array(const std::string& text, size_t open, RecordReader& r) {
  size_t pos = open + 1;
  int64_t line = 1;
  size_t counted = 0;  // newlines counted up to here
  auto line_at = [&](size_t p) {
    for (; counted < p; ++counted)
      if (text[counted] == '\n') ++line;
    return line;
  };
  auto skip_ws = [&] {
    while (pos < text.size() &&
           (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' || text[pos] == '\r'))
      ++pos;
  };
  skip_ws();
  if (pos < text.size() && text[pos] == ']') {
    ++pos;
  } else {
    for (;;) {
      skip_ws();
      const size_t start = pos;
      if (start >= text.size()) {
        r.error(line_at(open), "unterminated JSON array (rest of file skipped)");
        return;
      }
      int depth = 0;
      bool in_string = false;
      for (; pos < text.size(); ++pos) {
        const char c = text[pos];
        if (in_string) {
          if (c == '\\')
            ++pos;
          else if (c == '"')
            in_string = false;
          continue;
        }
        if (c == '"') {
          in_string = true;
        } else if (c == '{' || c == '[') {
          ++depth;
        } else if (c == '}' || c == ']') {
          if (depth == 0) break;  // the array's own ']'
          if (--depth == 0) {
            ++pos;
            break;
          }
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r')) {
          break;
        }
      }
      if (depth > 0 || in_string) {
        r.error(line_at(start), "unterminated array element (rest of file skipped)");
        return;
      }
      r.record(line_at(start), text.substr(start, pos - start));
      skip_ws();
      if (pos < text.size() && text[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < text.size() && text[pos] == ']') {
        ++pos;
        break;
      }
      r.error(line_at(pos), "expected ',' or ']' after an array element (rest of file skipped)");
      return;
    }
  }
  skip_ws();
  if (pos < text.size()) r.error(line_at(pos), "text after the JSON array (ignored)");
}

void read_tsv(const std::string& text, ChatFile* out, const std::string& name) {
  auto error = [&](int64_t line, const std::string& msg) {
    ++out->error_count;
    if (out->errors.size() < kMaxKeptErrors) out->errors.push_back({name, long(line), msg});
  };
  for_each_line(text, [&](int64_t line, const std::string& l) {
    if (line == 1) return;  // header
    if (l.empty()) return;
    const size_t t1 = l.find('\t');
    if (t1 == std::string::npos) return error(line, "expected question<TAB>answer");
    size_t t2 = l.find('\t', t1 + 1);
    if (t2 == std::string::npos) t2 = l.size();
    ChatConversation c;
    c.line = line;
    c.messages = {{"user", l.substr(0, t1)}, {"assistant", l.substr(t1 + 1, t2 - t1 - 1)}};
    if (c.messages[0].content.empty()) return error(line, "empty question");
    if (c.messages[1].content.empty()) return error(line, "empty answer");
    try {
      validate_chat_messages(c.messages);
    } catch (const std::invalid_argument& e) {
      return error(line, e.what());
    }
    out->conversations.push_back(std::move(c));
  });
}

}  // namespace

const char* chat_data_format_name(ChatDataFormat f) {
  switch (f) {
    case ChatDataFormat::kAuto:
      return "auto";
    case ChatDataFormat::kOpenAi:
      return "openai";
    case ChatDataFormat::kShareGpt:
      return "sharegpt";
    case ChatDataFormat::kAlpaca:
      return "alpaca";
    case ChatDataFormat::kTsv:
      return "tsv";
  }
  return "?";
}

ChatDataFormat chat_data_format_from_name(const std::string& name) {
  for (ChatDataFormat f :
       {ChatDataFormat::kAuto, ChatDataFormat::kOpenAi, ChatDataFormat::kShareGpt,
        ChatDataFormat::kAlpaca, ChatDataFormat::kTsv})
    if (name == chat_data_format_name(f)) return f;
  throw std::invalid_argument("unknown chat data format '" + name +
                              "' (expected auto, openai, sharegpt, alpaca or tsv)");
}

std::string ChatFile::error_report(size_t max_lines) const {
  if (error_count == 0) return "";
  std::string name = errors.empty() ? "" : errors.front().file;
  std::string out =
      std::to_string(error_count) + " bad record" + (error_count > 1 ? "s" : "") + " skipped in " +
      name + (error_count > max_lines ? " (first " + std::to_string(max_lines) + " shown)" : "") +
      ":";
  for (size_t i = 0; i < errors.size() && i < max_lines; ++i) out += "\n  " + errors[i].to_string();
  return out;
}

ChatFile parse_chat_data(const std::string& text, const std::string& name, ChatDataFormat format) {
  ChatFile out;
  out.format = format;
  // The first meaningful character tells JSON Lines from a JSON array from TSV.
  size_t first = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;  // UTF-8 byte-order mark
  first = text.find_first_not_of(" \t\r\n", first);
  if (first == std::string::npos) throw std::runtime_error(name + ": empty chat data");
  const std::string body = first > 0 && text.compare(0, 3, "\xEF\xBB\xBF") == 0
                               ? std::string(3, ' ') + text.substr(3)
                               : text;
  if (format == ChatDataFormat::kAuto) {
    const char c = text[first];
    const size_t nl = text.find('\n');
    const bool tab_in_first_line = text.substr(0, nl).find('\t') != std::string::npos;
    if (c != '[' && c != '{') {
      if (!tab_in_first_line)
        throw std::runtime_error(
            "cannot tell the format of " + name +
            ": expected JSON Lines ({...} per line), a JSON array ([...]) or question<TAB>answer "
            "TSV with a header line (or name it: --format openai|sharegpt|alpaca|tsv)");
      out.format = ChatDataFormat::kTsv;
    }
  }
  if (out.format == ChatDataFormat::kTsv) {
    read_tsv(body, &out, name);
  } else {
    RecordReader reader(&out, name);
    if (body[first] == '[')
      read_json_array(body, first, reader);
    else
      read_json_lines(body, reader);
  }
  if (out.conversations.empty()) {
    const std::string why = out.error_report();
    throw std::runtime_error(name + ": no usable conversations" +
                             (why.empty() ? std::string() : "; " + why));
  }
  return out;
}

ChatFile read_chat_file(const std::string& path, ChatDataFormat format) {
  if (!fs::exists(path)) throw std::runtime_error("chat data not found: " + path);
  if (fs::is_directory(path))
    throw std::runtime_error(path + " is a directory; give a chat data file");
  return parse_chat_data(read_file(path), path, format);
}

std::vector<PreferencePair> parse_preference_jsonl(const std::string& text,
                                                   const std::string& name) {
  std::vector<PreferencePair> out;
  ErrorList errors(name);
  for_each_line(text, [&](int64_t line, const std::string& l) {
    if (blank(l)) return;
    try {
      const json j = json::parse(l);
      if (!j.is_object()) throw std::invalid_argument("expected an object");
      PreferencePair p;
      p.line = line;
      if (j.contains("messages"))
        p.prompt = parse_messages(j["messages"]);
      else
        p.prompt = {{"user", required_string(j, "prompt")}};
      if (p.prompt.back().role != "user")
        throw std::invalid_argument("the prompt must end with a user message");
      p.chosen = required_string(j, "chosen");
      p.rejected = required_string(j, "rejected");
      if (p.chosen == p.rejected) throw std::invalid_argument("chosen equals rejected");
      validate_chat_messages({{"assistant", p.chosen}, {"assistant", p.rejected}});
      out.push_back(std::move(p));
    } catch (const json::exception& e) {
      errors.add(line, std::string("invalid JSON: ") + e.what());
    } catch (const std::invalid_argument& e) {
      errors.add(line, e.what());
    }
  });
  errors.throw_if_any();
  if (out.empty()) throw std::runtime_error(name + ": no preference pairs");
  return out;
}

std::vector<PreferencePair> read_preference_file(const std::string& path) {
  if (!fs::exists(path)) throw std::runtime_error("preference data not found: " + path);
  return parse_preference_jsonl(read_file(path), path);
}

bool is_held_out(const std::vector<ChatMessage>& messages, double val_fraction, uint64_t seed) {
  SplitConfig cfg;
  cfg.val_fraction = val_fraction;
  cfg.test_fraction = 0;
  cfg.seed = seed;
  std::string key;
  for (const auto& m : messages) key += m.role + '\x1f' + m.content + '\x1e';
  return DatasetSplit(cfg).assign(key) == Split::kVal;
}

std::vector<PreferencePair> build_preferences_from_qa(const std::vector<ChatConversation>& qa,
                                                      uint64_t seed) {
  std::vector<const ChatConversation*> pairs;
  std::vector<std::string> keys;  // normalised answers
  for (const auto& c : qa)
    if (c.messages.size() >= 2 && c.messages[c.messages.size() - 2].role == "user" &&
        c.messages.back().role == "assistant") {
      pairs.push_back(&c);
      keys.push_back(normalize_for_split(c.messages.back().content));
    }
  std::vector<PreferencePair> out;
  if (pairs.size() < 2) return out;
  const uint64_t n = pairs.size();
  for (uint64_t i = 0; i < n; ++i) {
    const auto& own = pairs[i]->messages;
    uint64_t h = seed * 0x9E3779B97F4A7C15ULL + i;
    for (int tries = 0; tries < 8; ++tries) {
      h ^= h >> 33;
      h *= 0xFF51AFD7ED558CCDULL;
      h ^= h >> 33;
      const uint64_t j = (i + 1 + h % (n - 1)) % n;  // never i itself
      if (keys[j] == keys[i]) continue;              // the same answer, written differently
      PreferencePair p;
      p.prompt.assign(own.begin(), own.end() - 1);
      p.chosen = own.back().content;
      p.rejected = pairs[j]->messages.back().content;
      p.line = pairs[i]->line;
      out.push_back(std::move(p));
      break;
    }
  }
  return out;
}

std::string preferences_to_jsonl(const std::vector<PreferencePair>& prefs) {
  std::string out;
  for (const auto& p : prefs) {
    json j;
    if (p.prompt.size() == 1)
      j["prompt"] = p.prompt[0].content;
    else
      j["messages"] = messages_json(p.prompt);
    j["chosen"] = p.chosen;
    j["rejected"] = p.rejected;
    out += j.dump() + "\n";
  }
  return out;
}

std::string conversations_to_jsonl(const std::vector<ChatConversation>& convs) {
  std::string out;
  for (const auto& c : convs) out += json{{"messages", messages_json(c.messages)}}.dump() + "\n";
  return out;
}

}  // namespace ktl
