// Shared by the grammar tests: a synthetic SentencePiece-like vocabulary and a random "model"
// that samples uniformly from the grammar's token mask.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/grammar/grammar_matcher.h"
#include "core/grammar/token_vocab.h"

namespace ktl::grammar::testing {

// All 256 single bytes (byte fallback), then ASCII words, JSON punctuation, Hangul syllables and
// words (some with a leading space), a token that is the first two bytes of a syllable, an
// empty token and three special tokens.
inline std::shared_ptr<const TokenVocab> synthetic_vocab(std::vector<bool>* special_out = nullptr) {
  std::vector<std::string> toks;
  for (int b = 0; b < 256; ++b) toks.push_back(std::string(1, static_cast<char>(b)));
  const char* words[] = {
      "name",        "age",    "true",     "false", "null",  "id",   "type",     "items",  "value",
      "tags",        "abc",    "hello",    "world", "the",   " the", " a",       "ing",    "tion",
      "0",           "10",     "42",       "123",   "99",    "-1",   ".5",       "e+",     "{\"",
      "\":",         "\",",    "\"}",      "[\"",   "\"]",   "},",   "{ \"",     "\": \"", "\", \"",
      "\": ",        ", ",     "  ",       "\n",    "\n  ",  " {",   " [",       "{}",     "[]",
      "\\n",         "\\\"",   "\\u00",    "red",   "green", "blue", "2024",     "-01-",   "T12:",
      "Z",           "@",      ".com",     "user",  "x",     "y",    "z",        "ok",     "안녕",
      " 하세요",     "이름",   "나이",     " 가",   "가",    "나",   "다",       "라",     "마",
      "바",          "사",     "아",       "자",    "차",    "카",   "타",       "파",     "하",
      "이",          "름",     "녕",       "요",    "세",    "값",   "\"이름\"", "빨강",   "파랑",
      " 안녕하세요", "한국어", "\xEC\x95",  // the first two bytes of 안
  };
  for (const char* w : words) toks.push_back(w);
  for (int i = 0; i < 100; ++i) toks.push_back("w" + std::to_string(i));
  toks.push_back("");  // an empty piece: never allowed
  std::vector<bool> special(toks.size(), false);
  for (const char* s : {"<s>", "</s>", "<unk>"}) {
    toks.push_back(s);
    special.push_back(true);
  }
  if (special_out) *special_out = special;
  return std::make_shared<TokenVocab>(toks, special);
}

inline std::vector<int> allowed_tokens(const GrammarMatcher& m) {
  const auto& mask = m.allowed_mask();
  std::vector<int> out;
  for (size_t w = 0; w < mask.size(); ++w) {
    for (uint32_t bits = mask[w]; bits; bits &= bits - 1) {
      out.push_back(static_cast<int>(w * 32 + __builtin_ctz(bits)));
    }
  }
  return out;
}

struct Generation {
  std::string text;
  bool completed = false;
  int tokens = 0;
};

// Uniformly random allowed tokens; stops at a complete sentence with probability 1/8 (or when
// nothing can follow). Past `soft_limit` tokens it prefers tokens that close things (quotes,
// brackets, braces), which ends any JSON value quickly.
inline Generation random_generation(GrammarMatcher& m, std::mt19937_64& rng, int soft_limit = 150,
                                    int hard_limit = 3000) {
  Generation g;
  const TokenVocab& v = m.grammar().vocab();
  for (; g.tokens < hard_limit; ++g.tokens) {
    if (m.is_terminated()) break;
    if (m.is_complete() && (g.tokens >= soft_limit || rng() % 8 == 0)) break;
    std::vector<int> allowed = allowed_tokens(m);
    if (allowed.empty()) return g;
    int pick = allowed[rng() % allowed.size()];
    if (g.tokens >= soft_limit && rng() % 8 != 0) {
      std::vector<int> closing;
      for (int t : allowed) {
        const std::string& b = v.token_bytes(t);
        if (b == "\"" || b == "}" || b == "]" || b == "0" || b == "1") closing.push_back(t);
      }
      if (!closing.empty()) pick = closing[rng() % closing.size()];
    }
    if (!m.accept_token(pick)) return g;  // a token from the mask must be accepted
    g.text += v.token_bytes(pick);
  }
  g.completed = m.is_complete();
  return g;
}

}  // namespace ktl::grammar::testing
