// Grammar benchmark (not a test): compile times of the JSON-schema suite (cold, and warm through
// GrammarCache), allowed_mask() over a synthetic 32,000-token SentencePiece-like vocabulary
// during random generations (every call, first visits of a state, and a second request whose
// masks come from the grammar's shared cache), and accept_token.
//   build/ktl_grammar_bench [generations_per_schema=3]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/grammar/compiled_grammar.h"
#include "core/grammar/grammar_cache.h"
#include "core/grammar/grammar_matcher.h"
#include "core/grammar/json_schema_compiler.h"
#include "core/grammar/utf8_ranges.h"
#include "tests/grammar/grammar_test_support.h"
#include "tests/grammar/schema_suite.h"

using namespace ktl::grammar;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// 256 byte-fallback tokens, then Hangul pieces (1-3 syllables, half with a leading space),
// ASCII words, digits and JSON punctuation: 32,000 distinct tokens, 3 of them special.
std::shared_ptr<const TokenVocab> vocab_32k() {
  std::mt19937_64 rng(42);
  std::vector<std::string> toks;
  std::set<std::string> seen;
  for (int b = 0; b < 256; ++b) toks.push_back(std::string(1, static_cast<char>(b)));
  for (const char* p : {"{\"", "\":", "\",", "\"}", "[\"", "\"]", "},", "\": \"", "\", \"", ", ",
                        "\n", "  ", "    ", "true", "false", "null", "\\n", "\\\""}) {
    if (seen.insert(p).second) toks.push_back(p);
  }
  const std::string letters = "etaoinshrdlucmfwypvbgkqjxz";
  while (toks.size() < 31997) {
    std::string t;
    const int kind = static_cast<int>(rng() % 10);
    if (rng() % 2) t = " ";
    if (kind < 5) {  // Hangul
      const int n = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < n; ++i) append_utf8(0xAC00 + static_cast<uint32_t>(rng() % 2350), &t);
    } else if (kind < 9) {  // ASCII word
      const int n = 2 + static_cast<int>(rng() % 7);
      for (int i = 0; i < n; ++i) t += letters[std::min<size_t>(rng() % 26, rng() % 26)];
    } else {  // number
      t += std::to_string(rng() % 10000);
    }
    if (seen.insert(t).second) toks.push_back(t);
  }
  std::vector<bool> special(toks.size(), false);
  for (const char* s : {"<s>", "</s>", "<unk>"}) {
    toks.push_back(s);
    special.push_back(true);
  }
  return std::make_shared<TokenVocab>(toks, special);
}

struct Stats {
  std::vector<double> us;
  void add(double v) { us.push_back(v); }
  void print(const char* what) {
    if (us.empty()) return;
    std::sort(us.begin(), us.end());
    double sum = 0;
    for (double v : us) sum += v;
    std::printf("%-44s n=%-7zu mean %8.1f us  p50 %8.1f us  p99 %8.1f us  max %8.1f us\n", what,
                us.size(), sum / us.size(), us[us.size() / 2], us[us.size() * 99 / 100], us.back());
  }
};

// Compiles the suite cold, then twice through a GrammarCache (the second pass all hits).
std::vector<std::shared_ptr<const CompiledGrammar>> bench_compile(
    const std::shared_ptr<const TokenVocab>& vocab) {
  const size_t n_schemas = sizeof(testing::kSchemas) / sizeof(testing::kSchemas[0]);
  std::vector<std::shared_ptr<const CompiledGrammar>> grammars;
  auto t0 = Clock::now();
  for (const char* s : testing::kSchemas) {
    grammars.push_back(CompiledGrammar::compile(json_schema_to_gbnf(s), vocab));
  }
  const double cold = ms_since(t0);
  GrammarCache cache;
  for (int pass = 0; pass < 2; ++pass) {
    t0 = Clock::now();
    for (const char* s : testing::kSchemas) {
      cache.get_or_compile(s,
                           [&] { return CompiledGrammar::compile(json_schema_to_gbnf(s), vocab); });
    }
    if (pass == 1) {
      std::printf(
          "compile %zu schemas: cold %.2f ms (%.3f ms each), warm via GrammarCache %.4f ms"
          " (hits %zu, misses %zu)\n",
          n_schemas, cold, cold / n_schemas, ms_since(t0), cache.hits(), cache.misses());
    }
  }
  return grammars;
}

std::vector<int> allowed_of(const std::vector<uint32_t>& mask) {
  std::vector<int> allowed;
  for (size_t w = 0; w < mask.size(); ++w) {
    for (uint32_t b = mask[w]; b; b &= b - 1) {
      allowed.push_back(static_cast<int>(w * 32 + __builtin_ctz(b)));
    }
  }
  return allowed;
}

// Random generations; pass 1 repeats them with new matchers, whose masks are in the grammars'
// shared caches.
void bench_masks(const std::vector<std::shared_ptr<const CompiledGrammar>>& grammars,
                 const TokenVocab& vocab, int gens) {
  Stats all, first, second, accept;
  std::vector<uint32_t> mask;
  for (int pass = 0; pass < 2; ++pass) {
    std::mt19937_64 rng(7);
    for (const auto& g : grammars) {
      for (int r = 0; r < gens; ++r) {
        GrammarMatcher m(g);
        for (int step = 0; step < 300 && !m.is_terminated(); ++step) {
          if (m.is_complete() && rng() % 8 == 0) break;
          const size_t before = g->mask_cache_size();
          auto t = Clock::now();
          (void)m.allowed_mask();
          const double us = ms_since(t) * 1000;
          (pass == 0 ? all : second).add(us);
          if (pass == 0 && g->mask_cache_size() != before) first.add(us);
          const std::vector<int> allowed = allowed_of(mask);
          if (allowed.empty()) break;
          int pick = allowed[rng() % allowed.size()];
          for (int tk : allowed) {  // steer to the end, as the tests do
            const auto& b = vocab.token_bytes(tk);
            if (step > 150 && (b == "\"" || b == "}" || b == "]")) pick = tk;
          }
          t = Clock::now();
          m.accept_token(pick);
          if (pass == 0) accept.add(ms_since(t) * 1000);
        }
      }
    }
  }
  all.print("allowed_mask, every call");
  first.print("  of which new states (full trie walk)");
  second.print("allowed_mask, 2nd request (shared cache)");
  accept.print("accept_token");
}

}  // namespace

int main(int argc, char** argv) {
  const int gens = argc > 1 ? std::atoi(argv[1]) : 3;
  const auto t0 = Clock::now();
  auto vocab = vocab_32k();
  std::printf("vocabulary: %d tokens, %d trie nodes, built in %.1f ms\n", vocab->size(),
              vocab->trie_nodes(), ms_since(t0));
  const auto grammars = bench_compile(vocab);
  bench_masks(grammars, *vocab, gens);
  return 0;
}
