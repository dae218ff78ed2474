// Structured output for one request: response_format (json_object, json_schema), the raw
// `grammar` field (GBNF) and tool calls become one GBNF grammar, compiled over the served
// model's vocabulary (core/grammar/) and cached, so a repeated schema costs a lookup.
//
// Tool calls are written as core/tokenizer/chat_tools.h defines them:
//   <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
// tool_choice "required" or a named function: the reply must be one such call (its arguments
// under the function's schema); "auto": a call, or text whose first character is not '<';
// "none": no grammar from the tools.
//
// Thread-safety: GrammarProvider is thread-safe (HTTP threads compile; the engine only matches).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/engine/engine.h"
#include "core/grammar/grammar_cache.h"
#include "core/grammar/token_vocab.h"
#include "server/openai_protocol.h"

namespace ktl {
class Tokenizer;
}

namespace ktl::server {

// The GBNF the request generates under; "" when unconstrained. Chat replies may start with the
// one space SentencePiece puts before a first word (the server strips it), so chat grammars
// allow it. Throws ApiError(400) naming the parameter and the unsupported schema keyword.
std::string request_gbnf(const CompletionRequest& req);

// The grammar vocabulary of a tokenizer: each token's output bytes; control, user-defined and
// unknown pieces and </s> are never allowed by a grammar (the engine allows end-of-sequence).
std::shared_ptr<const grammar::TokenVocab> token_vocab_for(const Tokenizer& tok);

// Renames rule `from` to `to` in GBNF text (outside literals, classes and comments).
std::string rename_gbnf_rule(const std::string& gbnf, const std::string& from,
                             const std::string& to);

class GrammarProvider {
 public:
  explicit GrammarProvider(size_t cache_capacity = 32) : cache_(cache_capacity) {}

  // The compiled grammar for `req` over `engine`'s vocabulary; null when unconstrained.
  // Throws ApiError(400) for an unsupported or oversized schema or grammar.
  std::shared_ptr<const grammar::CompiledGrammar> for_request(
      const CompletionRequest& req, const std::shared_ptr<Engine>& engine);
  const grammar::GrammarCache& cache() const { return cache_; }

 private:
  std::shared_ptr<const grammar::TokenVocab> vocab_for(const std::shared_ptr<Engine>& engine);

  std::mutex mu_;
  std::weak_ptr<Engine> vocab_engine_;
  std::shared_ptr<const grammar::TokenVocab> vocab_;
  grammar::GrammarCache cache_;
};

}  // namespace ktl::server
