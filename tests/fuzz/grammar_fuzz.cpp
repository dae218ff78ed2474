// libFuzzer target: structured-output grammars (core/grammar). Each input is tried as a JSON
// schema (json_schema_to_gbnf, then compiled) and as GBNF text (compiled directly) over a small
// byte-level vocabulary, and a compiled grammar runs a few matcher steps (masks, accepts) driven
// by the input's bytes. A bad input must throw GrammarError, never anything else, and every
// token from a mask must be accepted.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "core/grammar/compiled_grammar.h"
#include "core/grammar/grammar_error.h"
#include "core/grammar/grammar_matcher.h"
#include "core/grammar/json_schema_compiler.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace ktl::grammar;

std::shared_ptr<const TokenVocab> small_vocab() {
  static const auto vocab = [] {
    std::vector<std::string> toks;
    for (int b = 0; b < 256; ++b) toks.push_back(std::string(1, static_cast<char>(b)));
    for (const char* w : {"{\"", "\":", "\",", "true", "null", " 안녕", "하세요", "\xEC\x95", "\"}",
                          "12", "  ", "\n", "</s>"}) {
      toks.push_back(w);
    }
    std::vector<bool> special(toks.size(), false);
    special.back() = true;
    return std::make_shared<const TokenVocab>(toks, special);
  }();
  return vocab;
}

void run_matcher(const std::shared_ptr<const CompiledGrammar>& g, const uint8_t* data,
                 size_t size) {
  GrammarMatcher m(g);
  for (size_t step = 0; step < 16; ++step) {
    const auto& mask = m.allowed_mask();
    std::vector<int> allowed;
    for (size_t w = 0; w < mask.size(); ++w) {
      for (uint32_t b = mask[w]; b; b &= b - 1)
        allowed.push_back(static_cast<int>(w * 32 + __builtin_ctz(b)));
    }
    if (allowed.empty()) break;
    const int pick = allowed[(size ? data[step % size] : 0) % allowed.size()];
    if (!m.accepts_token(pick) || !m.accept_token(pick)) {
      std::fprintf(stderr, "fuzz: a token from the mask was refused\n");
      std::abort();
    }
    (void)m.is_terminated();
  }
}

template <typename F>
void expect_ok_or_grammar_error(F&& f) {
  try {
    f();
  } catch (const GrammarError&) {
  } catch (const std::exception& e) {
    ktl::fuzz::undocumented_exception(e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  GrammarLimits limits;
  limits.max_rules = 2000;  // keep each input fast; the bounds themselves are what is tested
  limits.max_repetition = 200;
  limits.max_stacks = 500;
  expect_ok_or_grammar_error([&] {
    JsonSchemaOptions opts;
    opts.max_rules = 2000;
    const std::string gbnf = json_schema_to_gbnf(text, opts);
    run_matcher(CompiledGrammar::compile(gbnf, small_vocab(), limits), data, size);
  });
  expect_ok_or_grammar_error(
      [&] { run_matcher(CompiledGrammar::compile(text, small_vocab(), limits), data, size); });
  return 0;
}
