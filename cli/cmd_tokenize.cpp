// ktl tokenize: inspect how a tokenizer splits text.
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli/command.h"
#include "core/base/utf8_util.h"
#include "core/data/input_stream.h"
#include "core/tokenizer/tokenizer.h"

namespace {

int run(const ktl::cli::Args& a) {
  if (a.has("text") == a.has("file"))
    throw ktl::cli::UsageError("give exactly one of --text or --file");
  auto tok = ktl::Tokenizer::load(a.get("model"));
  const bool pieces = a.get_bool("pieces"), stats = a.get_bool("stats");
  uint64_t chars = 0, tokens = 0, lines = 0;
  auto handle = [&](const std::string& text) {
    if (!ktl::utf8::valid(text)) throw std::runtime_error("input is not valid UTF-8");
    auto ids = tok->encode(text);
    chars += ktl::utf8::count_chars(text);
    tokens += ids.size();
    ++lines;
    if (stats) return;
    std::ostringstream os;
    for (size_t i = 0; i < ids.size(); ++i) os << (i ? " " : "") << ids[i];
    std::cout << os.str() << "\n";
    if (pieces) {
      std::ostringstream ps;
      for (size_t i = 0; i < ids.size(); ++i) ps << (i ? " " : "") << tok->id_to_piece(ids[i]);
      std::cout << ps.str() << "\n";
    }
  };
  if (a.has("text")) {
    handle(a.get("text"));
  } else {
    ktl::InputStream in(a.get("file"));  // plain, .gz or .bz2; one text per line
    std::string line;
    while (in.getline(line))
      if (!line.empty()) handle(line);
  }
  if (stats) {
    std::cout << "lines " << lines << "\nchars " << chars << "\ntokens " << tokens
              << "\nchars_per_token " << std::fixed << std::setprecision(3)
              << (tokens ? static_cast<double>(chars) / tokens : 0.0) << "\n";
  }
  return 0;
}

KTL_COMMAND(ktl::cli::Command{
    "tokenize",
    "print token ids (and pieces) of text, or --stats: characters, tokens, chars_per_token",
    {{"model", "tokenizer.model or a directory holding it", "", false, true},
     {"text", "text to tokenize"},
     {"file", "file to tokenize, one text per line (.gz/.bz2 ok)"},
     {"pieces", "also print the pieces", "", true},
     {"stats", "print only counts and chars_per_token", "", true}},
    run});

}  // namespace
