#include "core/data/chat_split.h"

#include <utf8proc.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <stdexcept>
#include <unordered_map>

#include "core/base/file_util.h"
#include "core/base/utf8_util.h"
#include "core/data/dataset_split.h"

namespace ktl {
namespace {

bool is_space(int32_t c) {
  if (c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0x85) return true;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return true;
    default:
      return false;
  }
}

bool is_trimmed(int32_t c) {  // punctuation and symbols
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
      return true;
    default:
      return false;
  }
}

// Union-find over conversation indices.
struct Groups {
  std::vector<int64_t> parent;
  explicit Groups(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int64_t find(int64_t x) {
    while (parent[size_t(x)] != x) {
      parent[size_t(x)] = parent[size_t(parent[size_t(x)])];
      x = parent[size_t(x)];
    }
    return x;
  }
  bool join(int64_t a, int64_t b) {
    a = find(a), b = find(b);
    if (a == b) return false;
    parent[size_t(std::max(a, b))] = std::min(a, b);
    return true;
  }
};

struct Grouping {
  std::vector<int64_t> group;    // per conversation: its group's root
  std::vector<std::string> rep;  // per root: the group's smallest key ("" for other indices)
  std::vector<int64_t> size;     // per root
  int64_t groups = 0, merged = 0, largest = 0;
};

Grouping group_conversations(const std::vector<ChatConversation>& all) {
  const size_t n = all.size();
  Groups uf(n);
  std::vector<std::vector<std::string>> keys(n);
  std::unordered_map<std::string, int64_t> first;
  Grouping g;
  for (size_t i = 0; i < n; ++i) {
    keys[i] = conversation_split_keys(all[i]);
    for (const auto& k : keys[i]) {
      auto [it, fresh] = first.emplace(k, int64_t(i));
      if (!fresh && uf.join(it->second, int64_t(i))) ++g.merged;
    }
  }
  g.group.resize(n);
  g.rep.assign(n, "");
  g.size.assign(n, 0);
  std::vector<bool> has_rep(n, false);
  for (size_t i = 0; i < n; ++i) {
    const int64_t r = uf.find(int64_t(i));
    g.group[i] = r;
    if (g.size[size_t(r)]++ == 0) ++g.groups;
    for (const auto& k : keys[i])
      if (!has_rep[size_t(r)] || k < g.rep[size_t(r)])
        g.rep[size_t(r)] = k, has_rep[size_t(r)] = true;
  }
  for (size_t i = 0; i < n; ++i) g.largest = std::max(g.largest, g.size[i]);
  return g;
}

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v);
  for (int i = int(s.size()) - 3; i > (v < 0 ? 1 : 0); i -= 3) s.insert(size_t(i), ",");
  return s;
}

}  // namespace

std::string normalize_for_split(std::string_view text) {
  // Valid UTF-8 without NULs for utf8proc: invalid bytes become U+FFFD.
  std::string clean;
  clean.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const int32_t c = utf8::next(text, i);
    if (c == 0) continue;
    utf8::append(clean, c < 0 ? 0xFFFD : c);
  }
  utf8proc_uint8_t* nfkc = utf8proc_NFKC(reinterpret_cast<const utf8proc_uint8_t*>(clean.c_str()));
  std::string s = nfkc ? std::string(reinterpret_cast<char*>(nfkc)) : clean;
  std::free(nfkc);
  // Lowercase and collapse whitespace; remember the code points for the trim.
  std::vector<int32_t> cps;
  for (size_t i = 0; i < s.size();) {
    const int32_t c = utf8::next(s, i);
    if (is_space(c)) {
      if (!cps.empty() && cps.back() != ' ') cps.push_back(' ');
      continue;
    }
    cps.push_back(utf8proc_tolower(c));
  }
  while (!cps.empty() && cps.back() == ' ') cps.pop_back();
  size_t b = 0, e = cps.size();
  while (b < e && (cps[b] == ' ' || is_trimmed(cps[b]))) ++b;
  while (e > b && (cps[e - 1] == ' ' || is_trimmed(cps[e - 1]))) --e;
  if (b == e) b = 0, e = cps.size();  // all punctuation: keep it rather than ""
  std::string out;
  for (size_t i = b; i < e; ++i) utf8::append(out, cps[i]);
  return out;
}

void ChatSplitConfig::validate() const {
  if (val_fraction < 0 || test_fraction < 0 || val_fraction + test_fraction >= 1.0)
    throw std::invalid_argument("val and test fractions must be >= 0 and sum to less than 1 (got " +
                                std::to_string(val_fraction) + " and " +
                                std::to_string(test_fraction) + ")");
}

std::vector<std::string> conversation_split_keys(const ChatConversation& c) {
  std::vector<std::string> keys;
  for (const auto& m : c.messages) {
    if (m.role != "user" && m.role != "assistant") continue;
    std::string k = (m.role == "user" ? "u" : "a") + normalize_for_split(m.content);
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(std::move(k));
  }
  return keys;
}

std::string ChatSplit::summary() const {
  std::string s = with_commas(conversations) + " conversations";
  if (groups > 0)
    s += " in " + with_commas(groups) + " groups (" + with_commas(merged) +
         " merged into another's group by a shared prompt or answer; largest " +
         with_commas(largest_group) +
         (oversized_groups > 0 ? "; " + with_commas(oversized_groups) +
                                     " larger than their held-out split kept in train"
                               : std::string()) +
         ")";
  s += "; train " + with_commas(int64_t(train.size())) + " / val " +
       with_commas(int64_t(val.size())) + " / test " + with_commas(int64_t(test.size()));
  return s;
}

ChatSplit split_conversations(std::vector<ChatConversation> all, const ChatSplitConfig& cfg) {
  cfg.validate();
  SplitConfig sc;
  sc.val_fraction = cfg.val_fraction;
  sc.test_fraction = cfg.test_fraction;
  sc.seed = cfg.seed;
  const DatasetSplit hash(sc);
  const Grouping g = group_conversations(all);
  ChatSplit s;
  s.conversations = int64_t(all.size());
  s.groups = g.groups;
  s.merged = g.merged;
  s.largest_group = g.largest;
  const double n = double(all.size());
  std::vector<int> where(all.size(), -1);  // per root: 0 train, 1 val, 2 test
  for (size_t i = 0; i < all.size(); ++i) {
    const auto r = size_t(g.group[i]);
    if (where[r] < 0) {
      Split sp = hash.assign(g.rep[r]);
      const double target = sp == Split::kVal    ? cfg.val_fraction * n
                            : sp == Split::kTest ? cfg.test_fraction * n
                                                 : n;
      if (sp != Split::kTrain && double(g.size[r]) > std::max(1.0, target)) {
        sp = Split::kTrain;
        ++s.oversized_groups;
      }
      where[r] = int(sp);
    }
    (where[r] == int(Split::kVal)    ? s.val
     : where[r] == int(Split::kTest) ? s.test
                                     : s.train)
        .push_back(std::move(all[i]));
  }
  return s;
}

std::vector<std::string> crossing_split_keys(const ChatSplit& s) {
  std::unordered_map<std::string, int> seen;  // key -> bit set of the splits it occurs in
  const std::vector<ChatConversation>* lists[] = {&s.train, &s.val, &s.test};
  for (int b = 0; b < 3; ++b)
    for (const auto& c : *lists[b])
      for (const auto& k : conversation_split_keys(c)) seen[k] |= 1 << b;
  std::vector<std::string> out;
  for (const auto& [k, bits] : seen)
    if (bits & (bits - 1)) out.push_back(k);
  std::sort(out.begin(), out.end());
  return out;
}

bool is_chat_split_dir(const std::string& path) {
  return fs::is_directory(path) && fs::exists(fs::path(path) / "train.jsonl");
}

ChatSplit load_chat_split(const std::string& path, const ChatSplitConfig& cfg,
                          ChatDataFormat format) {
  if (!is_chat_split_dir(path)) {
    ChatFile f = read_chat_file(path, format);
    ChatSplit s = split_conversations(std::move(f.conversations), cfg);
    s.read_report = path + ": " + chat_data_format_name(f.format) + ", " +
                    with_commas(s.conversations) + " conversations";
    if (f.error_count > 0) s.read_report += "\n" + f.error_report();
    return s;
  }
  ChatSplit s;
  std::vector<ChatConversation>* lists[] = {&s.train, &s.val, &s.test};
  const char* names[] = {"train", "val", "test"};
  for (int b = 0; b < 3; ++b) {
    const fs::path p = fs::path(path) / (std::string(names[b]) + ".jsonl");
    if (!fs::exists(p) || (b > 0 && fs::file_size(p) == 0)) continue;
    ChatFile f = read_chat_file(p.string(), ChatDataFormat::kOpenAi);
    if (!s.read_report.empty()) s.read_report += "\n";
    s.read_report +=
        p.string() + ": " + with_commas(int64_t(f.conversations.size())) + " conversations";
    if (f.error_count > 0) s.read_report += "\n" + f.error_report();
    *lists[b] = std::move(f.conversations);
  }
  const auto crossing = crossing_split_keys(s);
  if (!crossing.empty())
    throw std::runtime_error(
        path + ": " + std::to_string(crossing.size()) +
        " normalised prompts or answers occur in more than one of train/val/test (e.g. " +
        (crossing[0][0] == 'u' ? "prompt '" : "answer '") + crossing[0].substr(1) +
        "'); write the split with `ktl chat-data --split-out` or give the unsplit file");
  std::vector<ChatConversation> all;
  for (auto* l : lists) all.insert(all.end(), l->begin(), l->end());
  const Grouping g = group_conversations(all);
  s.conversations = int64_t(all.size());
  s.groups = g.groups;
  s.merged = g.merged;
  s.largest_group = g.largest;
  return s;
}

void write_chat_split(const ChatSplit& s, const std::string& dir, const ChatSplitConfig& cfg,
                      const std::string& source) {
  const fs::path d = dir;
  fs::create_directories(d);
  write_file_atomic(d / "train.jsonl", conversations_to_jsonl(s.train));
  write_file_atomic(d / "val.jsonl", conversations_to_jsonl(s.val));
  write_file_atomic(d / "test.jsonl", conversations_to_jsonl(s.test));
  nlohmann::ordered_json j;
  j["source"] = source;
  j["seed"] = cfg.seed;
  j["val_fraction"] = cfg.val_fraction;
  j["test_fraction"] = cfg.test_fraction;
  j["conversations"] = s.conversations;
  j["groups"] = s.groups;
  j["merged"] = s.merged;
  j["largest_group"] = s.largest_group;
  j["oversized_groups"] = s.oversized_groups;
  j["train"] = s.train.size();
  j["val"] = s.val.size();
  j["test"] = s.test.size();
  write_file_atomic(d / "split.json", j.dump(2) + "\n");
}

PreferenceSplit build_preference_split(const ChatSplit& s, uint64_t seed) {
  PreferenceSplit p;
  p.train = build_preferences_from_qa(s.train, seed);
  p.val = build_preferences_from_qa(s.val, seed);
  p.test = build_preferences_from_qa(s.test, seed);
  return p;
}

std::string preference_split_path(const std::string& train_path, const char* split) {
  const std::string ext = ".jsonl";
  std::string stem = train_path;
  if (stem.size() >= ext.size() && stem.compare(stem.size() - ext.size(), ext.size(), ext) == 0)
    stem.resize(stem.size() - ext.size());
  return stem + "." + split + ext;
}

PreferenceSplit read_preference_split(const std::string& train_path) {
  PreferenceSplit p;
  p.train = read_preference_file(train_path);
  for (const char* name : {"val", "test"}) {
    const std::string path = preference_split_path(train_path, name);
    if (!fs::exists(path) || fs::file_size(path) == 0) continue;
    (std::string(name) == "val" ? p.val : p.test) = read_preference_file(path);
  }
  return p;
}

}  // namespace ktl
