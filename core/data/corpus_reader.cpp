#include "core/data/corpus_reader.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/base/utf8_util.h"
#include "core/data/html_text.h"
#include "core/data/input_stream.h"
#include "core/data/wiki_markup.h"

namespace ktl {
namespace fs = std::filesystem;
using nlohmann::json;

std::string InputError::to_string() const {
  return file + (line > 0 ? ":" + std::to_string(line) : "") + ": " + message;
}

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Documents inside one parsed JSON value (see the header for the layouts).
bool json_texts(const json& j, const std::string& field, std::vector<std::string>& out) {
  if (j.is_array()) {
    bool any = false;
    for (const auto& e : j) any |= json_texts(e, field, out);
    return any;
  }
  if (!j.is_object()) return false;
  if (auto it = j.find(field); it != j.end() && it->is_string()) {
    out.push_back(it->get<std::string>());
    return true;
  }
  auto docs = j.find("document");
  if (docs == j.end() || !docs->is_array()) return false;
  for (const auto& d : *docs) {
    std::string text;
    for (const char* part : {"paragraph", "utterance", "sentence"}) {
      auto ps = d.find(part);
      if (ps == d.end() || !ps->is_array()) continue;
      for (const auto& p : *ps) {
        auto f = p.find("form");
        if (f == p.end() || !f->is_string()) continue;
        if (!text.empty()) text += '\n';
        text += f->get<std::string>();
      }
      break;
    }
    out.push_back(std::move(text));
  }
  return true;
}

}  // namespace

std::string CorpusReader::detect_format(const std::string& path) {
  std::string name = lower(fs::path(path).filename().string());
  for (const char* z : {".gz", ".bz2", ".gzip", ".bz"}) {
    const std::string suf = z;
    if (name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0) {
      name.resize(name.size() - suf.size());
      break;
    }
  }
  const std::string ext = fs::path(name).extension().string();
  if (ext == ".txt" || ext == ".text") return "text";
  if (ext == ".jsonl" || ext == ".ndjson") return "jsonl";
  if (ext == ".json") return "json";
  if (ext == ".html" || ext == ".htm" || ext == ".xhtml") return "html";
  if (ext == ".xml") return "mediawiki";
  return "";
}

std::vector<std::string> CorpusReader::expand(const std::vector<std::string>& inputs) const {
  std::vector<std::string> files;
  for (const auto& in : inputs) {
    if (!fs::exists(in)) throw std::runtime_error("input not found: " + in);
    if (!fs::is_directory(in)) {
      files.push_back(in);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& e : fs::recursive_directory_iterator(in))
      if (e.is_regular_file() && !detect_format(e.path().string()).empty())
        found.push_back(e.path().string());
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

void CorpusReader::report(const std::string& file, long line, const std::string& msg) {
  InputError e{file, line, msg};
  ++error_count_;
  if (on_error) on_error(e);
  if (errors_.size() < 1000) errors_.push_back(std::move(e));
}

bool CorpusReader::check_utf8(const std::string& file, long line, const std::string& text) {
  size_t bad = utf8::find_invalid(text);
  if (bad == std::string::npos) return true;
  report(file, line, "invalid UTF-8 at byte " + std::to_string(bad) + " (skipped)");
  return false;
}

void CorpusReader::read(const std::vector<std::string>& inputs, const Sink& sink) {
  for (const auto& f : expand(inputs)) read_file(f, sink);
}

void CorpusReader::read_file(const std::string& path, const Sink& sink) {
  std::string fmt = cfg_.format == "auto" ? detect_format(path) : cfg_.format;
  if (fmt.empty()) fmt = "text";
  try {
    if (fmt == "text")
      read_text(path, sink);
    else if (fmt == "jsonl")
      read_jsonl(path, sink);
    else if (fmt == "json")
      read_json(path, sink);
    else if (fmt == "html")
      read_html(path, sink);
    else if (fmt == "mediawiki")
      read_mediawiki(path, sink);
    else
      throw std::invalid_argument("unknown input format '" + fmt + "'");
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    // Stream errors already carry "file:line: "; keep them readable as one InputError.
    std::string msg = e.what();
    const std::string prefix = path + ":";
    long line = 0;
    if (msg.rfind(prefix, 0) == 0) {
      size_t colon = msg.find(':', prefix.size());
      line = std::atol(msg.substr(prefix.size(), colon - prefix.size()).c_str());
      msg = msg.substr(colon == std::string::npos ? prefix.size() : colon + 2);
    }
    report(path, line, msg + " (rest of file skipped)");
  }
}

bool CorpusReader::text_is_paragraphs(const std::string& path) {
  if (cfg_.txt_docs == "line") return false;
  if (cfg_.txt_docs == "paragraph") return true;
  // auto: blank lines between non-blank ones within the first MiB mean paragraph mode.
  InputStream in(path);
  std::string line;
  size_t bytes = 0;
  bool seen_text = false, pending_blank = false;
  try {
    while (bytes < (1u << 20) && in.getline(line)) {
      bytes += line.size() + 1;
      bool blank = line.find_first_not_of(" \t") == std::string::npos;
      if (blank && seen_text) pending_blank = true;
      if (!blank && pending_blank) return true;
      seen_text |= !blank;
    }
  } catch (const std::exception&) {
    // The real pass reports it.
  }
  return false;
}

void CorpusReader::read_text(const std::string& path, const Sink& sink) {
  const bool paragraphs = text_is_paragraphs(path);
  InputStream in(path);
  std::string line;
  RawDocument doc;
  bool doc_ok = true;
  auto flush = [&] {
    if (!doc.text.empty() && doc_ok) sink(std::move(doc));
    doc = RawDocument{};
    doc_ok = true;
  };
  while (in.getline(line)) {
    const bool blank = line.find_first_not_of(" \t") == std::string::npos;
    if (!paragraphs || blank) flush();
    if (blank) continue;
    if (!check_utf8(path, in.line_number(), line)) {
      if (paragraphs) doc_ok = false;  // the whole document goes: it would be cut in half
      continue;
    }
    if (doc.text.empty())
      doc.source = path + ":" + std::to_string(in.line_number());
    else
      doc.text += '\n';
    doc.text += line;
  }
  flush();
}

void CorpusReader::read_jsonl(const std::string& path, const Sink& sink) {
  InputStream in(path);
  std::string line;
  while (in.getline(line)) {
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const long n = in.line_number();
    if (!check_utf8(path, n, line)) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const std::exception& e) {
      report(path, n, std::string("broken JSON line (skipped): ") + e.what());
      continue;
    }
    std::vector<std::string> texts;
    if (!json_texts(j, cfg_.text_field, texts)) {
      report(path, n, "no string field '" + cfg_.text_field + "' (skipped)");
      continue;
    }
    for (auto& t : texts) sink(RawDocument{std::move(t), path + ":" + std::to_string(n)});
  }
}

void CorpusReader::read_json(const std::string& path, const Sink& sink) {
  InputStream in(path);
  std::string all = in.read_all();
  if (!check_utf8(path, 0, all)) return;
  json j;
  try {
    j = json::parse(all);
  } catch (const json::parse_error& e) {
    // A file that is really JSON Lines under a .json name.
    if (all.find('\n') != std::string::npos && all.find("}\n{") != std::string::npos)
      return read_jsonl(path, sink);
    report(path, 0, std::string("broken JSON (skipped): ") + e.what());
    return;
  }
  std::vector<std::string> texts;
  if (!json_texts(j, cfg_.text_field, texts)) {
    report(path, 0, "no string field '" + cfg_.text_field + "' and no Modu 'document' list");
    return;
  }
  for (auto& t : texts) sink(RawDocument{std::move(t), path + ":1"});
}

void CorpusReader::read_html(const std::string& path, const Sink& sink) {
  InputStream in(path);
  std::string html = in.read_all();
  if (!check_utf8(path, 0, html)) return;
  sink(RawDocument{html_to_text(html), path + ":1"});
}

namespace {

// Text between <tag> and </tag> on one line, or "" when absent.
std::string inline_element(const std::string& line, const char* tag) {
  const std::string open = std::string("<") + tag + ">", close = std::string("</") + tag + ">";
  size_t a = line.find(open);
  if (a == std::string::npos) return "";
  a += open.size();
  size_t b = line.find(close, a);
  return b == std::string::npos ? "" : line.substr(a, b - a);
}

struct WikiPage {
  long line = 0;
  std::string title, ns = "0", text;
  bool redirect = false, in_text = false, have_text = false;
};

bool is_redirect_text(const std::string& t) {
  std::string head = lower(t.substr(0, 16));
  return head.rfind("#redirect", 0) == 0 || t.rfind("#넘겨주기", 0) == 0;
}

}  // namespace

void CorpusReader::read_mediawiki(const std::string& path, const Sink& sink) {
  InputStream in(path);
  std::string line;
  WikiPage page;
  bool in_page = false;
  while (in.getline(line)) {
    if (!in_page) {
      if (line.find("<page>") != std::string::npos) {
        page = WikiPage{};
        page.line = in.line_number();
        in_page = true;
      }
      continue;
    }
    if (page.in_text) {
      size_t end = line.find("</text>");
      page.text += '\n';
      page.text += line.substr(0, end);
      if (end != std::string::npos) page.in_text = false;
      continue;
    }
    if (line.find("<title>") != std::string::npos)
      page.title = inline_element(line, "title");
    else if (line.find("<ns>") != std::string::npos)
      page.ns = inline_element(line, "ns");
    else if (line.find("<redirect") != std::string::npos)
      page.redirect = true;
    else if (size_t t = line.find("<text"); t != std::string::npos) {
      size_t gt = line.find('>', t);
      if (gt == std::string::npos || line[gt - 1] == '/') continue;  // <text ... /> is empty
      size_t end = line.find("</text>", gt);
      page.text = line.substr(gt + 1, end == std::string::npos ? std::string::npos : end - gt - 1);
      page.in_text = end == std::string::npos;
      page.have_text = true;
    } else if (line.find("</page>") != std::string::npos) {
      in_page = false;
      if (page.ns != "0" || page.redirect || !page.have_text) continue;
      std::string wikitext = decode_html_entities(page.text);  // XML escaping
      if (is_redirect_text(wikitext)) continue;
      if (!check_utf8(path, page.line, wikitext)) continue;
      sink(RawDocument{strip_wiki_markup(wikitext), path + ":" + std::to_string(page.line)});
    }
  }
  if (in_page)
    report(path, page.line,
           "unterminated <page> (\"" + page.title + "\") at end of file (skipped)");
}

}  // namespace ktl
