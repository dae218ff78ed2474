// CorpusReader: turns input files and directories into raw documents.
// Formats (by extension after stripping .gz/.bz2, or forced with ReaderConfig::format):
//   text      .txt    one document per line, or blank-line separated (auto-detected)
//   jsonl     .jsonl  one JSON object per line; text in `text_field`, or the Modu corpus layout
//                     {"document":[{"paragraph":[{"form":...}]}]} (one document per entry)
//   json      .json   a whole-file JSON value: Modu layout, an array of objects, or one object
//   html      .html .htm  one document per file (script/style/navigation dropped)
//   mediawiki .xml    MediaWiki export/dump: article namespace only, redirects skipped,
//                     markup stripped (e.g. kowiki-latest-pages-articles.xml.bz2)
// Compression (gzip, bzip2) is detected from the file's bytes. Bad input (invalid UTF-8, a broken
// JSON line, a truncated archive) is reported as an InputError with file and line and skipped;
// everything readable around it is kept.
// Thread-safety: one reader per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ktl {

struct ReaderConfig {
  std::string format = "auto";      // auto | text | jsonl | json | html | mediawiki
  std::string text_field = "text";  // JSON key holding the document text
  std::string txt_docs = "auto";    // text files: auto | line | paragraph
};

struct RawDocument {
  std::string text;
  std::string source;  // "file:line" of the document's first line
};

struct InputError {
  std::string file;
  long line = 0;  // 0 when the error concerns the whole file
  std::string message;
  std::string to_string() const;
};

class CorpusReader {
 public:
  using Sink = std::function<void(RawDocument&&)>;
  explicit CorpusReader(ReaderConfig cfg = {}) : cfg_(std::move(cfg)) {}

  // Reads every input (files or directories, recursively, in sorted order) into the sink.
  // A missing input throws; errors inside files are recorded and reading goes on.
  void read(const std::vector<std::string>& inputs, const Sink& sink);
  void read_file(const std::string& path, const Sink& sink);

  // Expands directories to the files with a known extension, sorted. Throws on a missing path.
  std::vector<std::string> expand(const std::vector<std::string>& inputs) const;
  static std::string detect_format(const std::string& path);  // "" when unknown

  const std::vector<InputError>& errors() const { return errors_; }
  uint64_t error_count() const { return error_count_; }
  // Called for each error as it happens (e.g. to print it); optional.
  std::function<void(const InputError&)> on_error;

 private:
  void report(const std::string& file, long line, const std::string& msg);
  bool check_utf8(const std::string& file, long line, const std::string& text);
  void read_text(const std::string& path, const Sink& sink);
  void read_jsonl(const std::string& path, const Sink& sink);
  void read_json(const std::string& path, const Sink& sink);
  void read_html(const std::string& path, const Sink& sink);
  void read_mediawiki(const std::string& path, const Sink& sink);
  bool text_is_paragraphs(const std::string& path);

  ReaderConfig cfg_;
  std::vector<InputError> errors_;  // the first 1000; error_count_ has them all
  uint64_t error_count_ = 0;
};

}  // namespace ktl
