#include "server/structured_output.h"

#include <cctype>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/grammar/compiled_grammar.h"
#include "core/grammar/grammar_error.h"
#include "core/grammar/json_schema_compiler.h"
#include "core/tokenizer/chat_tools.h"
#include "core/tokenizer/tokenizer.h"
#include "server/api_error.h"

namespace ktl::server {
namespace {

using ojson = nlohmann::ordered_json;

bool ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

// Moves `$defs`/`definitions` of a tool's parameters up to the wrapper, where its local
// $refs ("#/$defs/x") resolve once the parameters sit inside the wrapper.
void hoist_defs(ojson& params, ojson& root) {
  for (const char* key : {"$defs", "definitions"}) {
    if (!params.is_object() || !params.contains(key)) continue;
    for (auto& [name, def] : params[key].items()) {
      if (root[key].contains(name))
        throw ApiError(400,
                       "tools: '" + std::string(key) + "/" + name + "' is defined by two tools",
                       "invalid_request", "tools");
      root[key][name] = def;
    }
    params.erase(key);
  }
}

// {"name": const, "arguments": parameters} for each callable tool, as one schema.
std::string tool_call_schema(const CompletionRequest& req) {
  ojson root = ojson::object();
  ojson alts = ojson::array();
  for (const auto& t : req.tools) {
    if (req.tool_choice == ToolChoice::kNamed && t.name != req.tool_choice_name) continue;
    ojson params = ojson::parse(t.parameters);
    hoist_defs(params, root);
    ojson call = {{"type", "object"},
                  {"properties", {{"name", {{"const", t.name}}}, {"arguments", params}}},
                  {"required", {"name", "arguments"}},
                  {"additionalProperties", false}};
    alts.push_back(std::move(call));
  }
  if (alts.size() == 1) {
    for (auto& [k, v] : alts[0].items()) root[k] = v;
  } else {
    root["anyOf"] = std::move(alts);
  }
  return root.dump();
}

std::string compile_schema(const std::string& schema, const char* param) {
  try {
    return grammar::json_schema_to_gbnf(schema);
  } catch (const grammar::GrammarError& e) {
    throw ApiError(400, std::string(param) + ": " + e.what(), "unsupported_schema", param);
  }
}

std::string tools_gbnf(const CompletionRequest& req) {
  std::string call_json =
      rename_gbnf_rule(compile_schema(tool_call_schema(req), "tools"), "root", "ktl-call-json");
  std::string g = "root ::= \" \"? ";
  g += req.tool_choice == ToolChoice::kAuto ? "( ktl-tool-call | ktl-free )?\n" : "ktl-tool-call\n";
  g += "ktl-tool-call ::= " + grammar::gbnf_literal(std::string(kToolCallOpen) + "\n") +
       " ktl-call-json " + grammar::gbnf_literal("\n" + std::string(kToolCallClose)) + "\n";
  g += "ktl-free ::= [^<] .*\n";
  return g + call_json;
}

}  // namespace

std::string rename_gbnf_rule(const std::string& g, const std::string& from, const std::string& to) {
  std::string out;
  out.reserve(g.size() + 64);
  size_t i = 0;
  while (i < g.size()) {
    const char c = g[i];
    if (c == '"' || c == '[') {  // a literal or class: copy through its end
      const char close = c == '"' ? '"' : ']';
      size_t j = i + 1;
      while (j < g.size() && g[j] != close) j += g[j] == '\\' ? 2 : 1;
      j = std::min(j + 1, g.size());
      out.append(g, i, j - i);
      i = j;
    } else if (c == '#') {
      size_t j = g.find('\n', i);
      j = j == std::string::npos ? g.size() : j;
      out.append(g, i, j - i);
      i = j;
    } else if (ident_char(c)) {
      size_t j = i;
      while (j < g.size() && ident_char(g[j])) ++j;
      const std::string word = g.substr(i, j - i);
      out += word == from ? to : word;
      i = j;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

std::string request_gbnf(const CompletionRequest& req) {
  if (req.chat && req.tools_active()) return tools_gbnf(req);
  switch (req.format.kind) {
    case ResponseFormat::Kind::kText:
      return "";
    case ResponseFormat::Kind::kJsonObject:  // JSON grammars allow leading whitespace already
      return grammar::json_object_gbnf();
    case ResponseFormat::Kind::kJsonSchema:
      return compile_schema(req.format.schema, "response_format");
    case ResponseFormat::Kind::kGrammar:
      break;
  }
  // A raw grammar on the chat endpoint gets the reply's word-start space (the server strips it)
  // in front of its root.
  const std::string& g = req.format.grammar;
  if (!req.chat) return g;
  return "root ::= \" \"? ktl-chat-root\n" + rename_gbnf_rule(g, "root", "ktl-chat-root");
}

std::shared_ptr<const grammar::TokenVocab> token_vocab_for(const Tokenizer& tok) {
  const int n = tok.vocab_size();
  std::vector<std::string> bytes(n);
  std::vector<bool> special(n);
  for (int i = 0; i < n; ++i) {
    bytes[i] = tok.token_bytes(i);
    const PieceType t = tok.type(i);
    special[i] = (t != PieceType::kNormal && t != PieceType::kByte) || i == tok.eos_id();
  }
  return std::make_shared<const grammar::TokenVocab>(std::move(bytes), std::move(special));
}

std::shared_ptr<const grammar::TokenVocab> GrammarProvider::vocab_for(
    const std::shared_ptr<Engine>& engine) {
  std::lock_guard<std::mutex> lk(mu_);
  if (vocab_ && vocab_engine_.lock() == engine) return vocab_;
  vocab_ = token_vocab_for(engine->tokenizer());
  vocab_engine_ = engine;
  return vocab_;
}

std::shared_ptr<const grammar::CompiledGrammar> GrammarProvider::for_request(
    const CompletionRequest& req, const std::shared_ptr<Engine>& engine) {
  const std::string gbnf = request_gbnf(req);
  if (gbnf.empty()) return nullptr;
  auto vocab = vocab_for(engine);
  const char* param = req.chat && req.tools_active()                      ? "tools"
                      : req.format.kind == ResponseFormat::Kind::kGrammar ? "grammar"
                                                                          : "response_format";
  try {
    // Cached grammars hold their vocabulary, so its address names it while any of them lives.
    const std::string key = std::to_string(reinterpret_cast<uintptr_t>(vocab.get())) + "\n" + gbnf;
    return cache_.get_or_compile(key,
                                 [&] { return grammar::CompiledGrammar::compile(gbnf, vocab); });
  } catch (const grammar::GrammarError& e) {
    throw ApiError(400, std::string(param) + ": " + e.what(), "invalid_grammar", param);
  }
}

}  // namespace ktl::server
