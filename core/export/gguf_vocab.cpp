#include "core/export/gguf_vocab.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <queue>
#include <stdexcept>

#include "core/export/gguf_reader.h"

namespace ktl {

namespace {

size_t utf8_len(unsigned char c) {
  static const size_t lookup[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[c >> 4];
}

struct Symbol {
  int prev, next;
  size_t begin, n;  // byte range in the escaped text
};

struct Bigram {
  int left, right;
  float score;
  size_t size;
};

// llama.cpp's ordering: highest score first, then the leftmost pair.
struct BigramLess {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

}  // namespace

GgufVocab::GgufVocab(std::vector<std::string> tokens, std::vector<float> scores, int unk_id,
                     bool add_space_prefix)
    : tokens_(std::move(tokens)),
      scores_(std::move(scores)),
      unk_id_(unk_id),
      add_space_prefix_(add_space_prefix) {
  if (scores_.size() != tokens_.size())
    throw std::invalid_argument("tokens and scores differ in size");
  for (size_t i = 0; i < tokens_.size(); ++i) to_id_.emplace(tokens_[i], static_cast<int>(i));
}

GgufVocab GgufVocab::from_gguf(const GgufFile& f) {
  const GgufValue& toks = f.get_array("tokenizer.ggml.tokens", GgufType::kString);
  const GgufValue& scs = f.get_array("tokenizer.ggml.scores", GgufType::kFloat32);
  std::vector<std::string> tokens;
  std::vector<float> scores;
  for (const auto& t : toks.arr) tokens.push_back(t.s);
  for (const auto& s : scs.arr) scores.push_back(static_cast<float>(s.f));
  const int unk = f.find("tokenizer.ggml.unknown_token_id")
                      ? static_cast<int>(f.get_u32("tokenizer.ggml.unknown_token_id"))
                      : 0;
  const bool prefix = f.find("tokenizer.ggml.add_space_prefix")
                          ? f.get_bool("tokenizer.ggml.add_space_prefix")
                          : true;  // llama.cpp's default for SPM vocabularies
  return GgufVocab(std::move(tokens), std::move(scores), unk, prefix);
}

int GgufVocab::lookup(std::string_view piece) const {
  auto it = to_id_.find(std::string(piece));
  return it == to_id_.end() ? -1 : it->second;
}

int GgufVocab::byte_token(unsigned char b) const {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
  int id = lookup(buf);
  if (id < 0) id = lookup(std::string(1, static_cast<char>(b)));
  return id < 0 ? unk_id_ : id;
}

std::vector<int> GgufVocab::tokenize(std::string_view raw) const {
  std::vector<int> out;
  if (raw.empty()) return out;
  std::string text;
  if (add_space_prefix_) text = " ";
  text += raw;
  std::string esc;  // spaces as U+2581 "▁"
  for (char c : text) esc += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);

  std::vector<Symbol> sym;
  for (size_t off = 0; off < esc.size();) {
    const size_t n = std::min(esc.size() - off, utf8_len(static_cast<unsigned char>(esc[off])));
    const int idx = static_cast<int>(sym.size());
    sym.push_back({idx - 1, off + n == esc.size() ? -1 : idx + 1, off, n});
    off += n;
  }
  std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue;
  std::map<std::string, std::pair<int, int>> rev_merge;
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const std::string piece = esc.substr(sym[l].begin, sym[l].n + sym[r].n);
    const int id = lookup(piece);
    if (id < 0) return;
    queue.push({l, r, scores_[id], piece.size()});
    rev_merge[piece] = {l, r};
  };
  for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = sym[b.left];
    Symbol& r = sym[b.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale pair
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  // Symbols that are not tokens: undo their merges, or fall back to byte tokens.
  std::function<void(int)> resegment = [&](int i) {
    const std::string piece = esc.substr(sym[i].begin, sym[i].n);
    const int id = lookup(piece);
    if (id >= 0) return out.push_back(id);
    auto it = rev_merge.find(piece);
    if (it == rev_merge.end()) {
      for (unsigned char c : piece) out.push_back(byte_token(c));
      return;
    }
    resegment(it->second.first);
    resegment(it->second.second);
  };
  for (int i = 0; i != -1; i = sym[i].next) resegment(i);
  return out;
}

}  // namespace ktl
