#include "core/data/chat_data.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/data/dataset_split.h"

namespace ktl {
namespace {

using json = nlohmann::json;

// Collects per-line errors and throws them together.
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

std::string required_string(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key))
    throw std::invalid_argument(std::string("missing \"") + key + "\"");
  if (!j[key].is_string())
    throw std::invalid_argument(std::string("\"") + key + "\" must be a string");
  return j[key].get<std::string>();
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

}  // namespace

std::vector<ChatConversation> parse_chat_jsonl(const std::string& text, const std::string& name) {
  std::vector<ChatConversation> out;
  ErrorList errors(name);
  for_each_line(text, [&](int64_t line, const std::string& l) {
    if (l.find_first_not_of(" \t") == std::string::npos) return;
    try {
      const json j = json::parse(l);
      if (!j.is_object() || !j.contains("messages"))
        throw std::invalid_argument("expected {\"messages\": [...]}");
      ChatConversation c{parse_messages(j["messages"]), line};
      if (!has_assistant(c.messages)) throw std::invalid_argument("no assistant reply to learn");
      out.push_back(std::move(c));
    } catch (const json::exception& e) {
      errors.add(line, std::string("invalid JSON: ") + e.what());
    } catch (const std::invalid_argument& e) {
      errors.add(line, e.what());
    }
  });
  errors.throw_if_any();
  if (out.empty()) throw std::runtime_error(name + ": no conversations");
  return out;
}

std::vector<ChatConversation> parse_chat_tsv(const std::string& text, const std::string& name) {
  std::vector<ChatConversation> out;
  ErrorList errors(name);
  for_each_line(text, [&](int64_t line, const std::string& l) {
    if (line == 1) return;  // header
    if (l.empty()) return;
    const size_t t1 = l.find('\t');
    if (t1 == std::string::npos) return errors.add(line, "expected question<TAB>answer");
    size_t t2 = l.find('\t', t1 + 1);
    if (t2 == std::string::npos) t2 = l.size();
    ChatConversation c;
    c.line = line;
    c.messages = {{"user", l.substr(0, t1)}, {"assistant", l.substr(t1 + 1, t2 - t1 - 1)}};
    if (c.messages[0].content.empty()) return errors.add(line, "empty question");
    if (c.messages[1].content.empty()) return errors.add(line, "empty answer");
    try {
      validate_chat_messages(c.messages);
    } catch (const std::invalid_argument& e) {
      return errors.add(line, e.what());
    }
    out.push_back(std::move(c));
  });
  errors.throw_if_any();
  if (out.empty()) throw std::runtime_error(name + ": no question/answer rows after the header");
  return out;
}

std::vector<ChatConversation> read_chat_file(const std::string& path) {
  if (!fs::exists(path)) throw std::runtime_error("chat data not found: " + path);
  const std::string text = read_file(path);
  if (fs::path(path).extension() == ".tsv") return parse_chat_tsv(text, path);
  return parse_chat_jsonl(text, path);
}

std::vector<PreferencePair> parse_preference_jsonl(const std::string& text,
                                                   const std::string& name) {
  std::vector<PreferencePair> out;
  ErrorList errors(name);
  for_each_line(text, [&](int64_t line, const std::string& l) {
    if (l.find_first_not_of(" \t") == std::string::npos) return;
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

ChatSplit split_conversations(std::vector<ChatConversation> all, double val_fraction,
                              uint64_t seed) {
  ChatSplit s;
  for (auto& c : all)
    (is_held_out(c.messages, val_fraction, seed) ? s.val : s.train).push_back(std::move(c));
  return s;
}

std::vector<PreferencePair> build_preferences_from_qa(const std::vector<ChatConversation>& qa,
                                                      uint64_t seed) {
  std::vector<const ChatConversation*> pairs;
  for (const auto& c : qa)
    if (c.messages.size() >= 2 && c.messages[c.messages.size() - 2].role == "user" &&
        c.messages.back().role == "assistant")
      pairs.push_back(&c);
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
      const std::string& other = pairs[j]->messages.back().content;
      if (other == own.back().content) continue;
      PreferencePair p;
      p.prompt.assign(own.begin(), own.end() - 1);
      p.chosen = own.back().content;
      p.rejected = other;
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
