#include "core/data/held_out_texts.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/data/corpus_reader.h"
#include "core/data/dedup.h"
#include "core/data/input_stream.h"

namespace ktl {
namespace {

// Every string in a JSON value, arrays and nested objects included.
template <class Fn>
void for_each_string(const nlohmann::json& v, const Fn& fn) {
  if (v.is_string()) {
    fn(v.get_ref<const std::string&>());
  } else if (v.is_array() || v.is_object()) {
    for (const auto& x : v) for_each_string(x, fn);
  }
}

}  // namespace

void HeldOutTexts::add(std::string_view raw) {
  const CleanResult r = cleaner_.clean(raw);  // r.text is set even when the filters drop it
  if (!r.text.empty()) keys_.insert(ExactDedup::key(r.text));
}

uint64_t HeldOutTexts::add_file(const std::string& path) {
  InputStream in(path);
  const bool jsonl = CorpusReader::detect_format(path) == "jsonl";  // .jsonl(.gz), .ndjson
  uint64_t n = 0;
  std::string line;
  while (in.getline(line)) {
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (!jsonl) {
      add(line);
      ++n;
      continue;
    }
    const auto obj = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!obj.is_object())
      throw std::runtime_error(path + ":" + std::to_string(in.line_number()) +
                               ": not a JSON object (held-out files must be read whole)");
    for_each_string(obj, [&](const std::string& s) {
      add(s);
      ++n;
    });
  }
  return n;
}

bool HeldOutTexts::contains(std::string_view cleaned) const {
  return !keys_.empty() && keys_.count(ExactDedup::key(cleaned)) > 0;
}

}  // namespace ktl
