#include "core/data/data_pipeline.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <cstring>
#include <thread>

#include "core/base/file_util.h"
#include "core/base/utf8_util.h"
#include "core/data/held_out_texts.h"
#include "core/data/input_stream.h"
#include "core/data/sentence_splitter.h"
#include "core/data/token_shard.h"

namespace ktl {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Rate-limited progress lines on stderr: "[label] docs, MB, docs/s, MB/s, percent, ETA".
class Progress {
 public:
  Progress(std::string label, uint64_t total_bytes, bool enabled)
      : label_(std::move(label)), total_(total_bytes), enabled_(enabled) {}
  void update(uint64_t docs, uint64_t bytes, bool final = false) {
    if (!enabled_) return;
    const double t = since(start_);
    if (!final && t - last_ < 2.0) return;
    if (final && t < 2.0) return;  // short runs stay quiet
    last_ = t;
    char line[256];
    const double mb = bytes / 1e6;
    int n = std::snprintf(line, sizeof(line), "[%s] %llu docs, %.1f MB (%.0f docs/s, %.2f MB/s)",
                          label_.c_str(), static_cast<unsigned long long>(docs), mb,
                          docs / std::max(t, 1e-9), mb / std::max(t, 1e-9));
    if (total_ > 0 && bytes > 0 && n > 0 && n < static_cast<int>(sizeof(line))) {
      const double frac = std::min(1.0, static_cast<double>(bytes) / total_);
      const double eta = frac > 0 ? t * (1 - frac) / frac : 0;
      std::snprintf(line + n, sizeof(line) - n, " %3.0f%% ETA %.0fs", frac * 100, eta);
    }
    std::cerr << line << (final ? " done\n" : "\n");
  }

 private:
  std::string label_;
  uint64_t total_;
  bool enabled_;
  Clock::time_point start_ = Clock::now();
  double last_ = 0;
};

struct StopReading {};  // not a std::exception: passes through CorpusReader's error handling

// Streams documents into train/val/test .txt files (atomically renamed at commit()), holding back
// the two train documents with the highest split position so that val and test can each take
// one when the corpus is too small for the hash split to fill them.
class SplitFiles {
 public:
  SplitFiles(const fs::path& dir, std::ofstream* tokenizer_input, const fs::path& tokenizer_path)
      : dir_(dir), tok_in_(tokenizer_input), tok_path_(tokenizer_path) {
    for (int s = 0; s < 3; ++s) {
      tmp_[s] =
          dir / (std::string(split_name(Split(s))) + ".txt.tmp-" + std::to_string(::getpid()));
      errno = 0;
      out_[s].open(tmp_[s], std::ios::binary | std::ios::trunc);
      if (!out_[s])
        throw std::runtime_error("cannot create " + tmp_[s].string() + ": " +
                                 (errno ? std::strerror(errno) : "open failed"));
    }
  }
  ~SplitFiles() {
    for (auto& t : tmp_) {
      std::error_code ec;
      fs::remove(t, ec);
    }
  }

  // Per source: train/tokenizer counts; the cap on tokenizer characters per source (0 = none).
  void set_source_accounting(std::map<std::string, SourceStats>* sources, uint64_t cap) {
    sources_ = sources, cap_ = cap;
  }
  // The source of each val document, in file order.
  const std::vector<std::string>& val_sources() const { return val_sources_; }

  void add(Split s, double pos, std::string text, std::string source = "") {
    if (s != Split::kTrain) return write(s, text, source);
    held_.push_back({pos, std::move(text), std::move(source)});
    if (held_.size() <= 2) return;
    auto lowest = std::min_element(held_.begin(), held_.end(),
                                   [](const Held& a, const Held& b) { return a.pos < b.pos; });
    write(Split::kTrain, lowest->text, lowest->source);
    held_.erase(lowest);
  }

  void commit(std::map<std::string, SplitStats>& stats) {
    std::sort(held_.begin(), held_.end(),
              [](const Held& a, const Held& b) { return a.pos > b.pos; });
    size_t next = 0;
    for (Split s : {Split::kVal, Split::kTest})
      if (stats_[int(s)].docs == 0 && next < held_.size() &&
          stats_[0].docs + (held_.size() - next) > 1)
        write(s, held_[next].text, held_[next].source), ++next;
    for (; next < held_.size(); ++next) write(Split::kTrain, held_[next].text, held_[next].source);
    held_.clear();
    for (int s = 0; s < 3; ++s) {
      errno = 0;
      out_[s].flush();
      if (!out_[s]) fail_write(tmp_[s]);
      out_[s].close();
      fsync_file(tmp_[s]);
      fs::rename(tmp_[s], dir_ / (std::string(split_name(Split(s))) + ".txt"));
      stats[split_name(Split(s))] = stats_[s];
    }
    fsync_dir(dir_);
  }

 private:
  // A stream keeps no errno; the write() that failed just now left it in errno.
  [[noreturn]] static void fail_write(const fs::path& path) {
    throw std::runtime_error("cannot write " + path.string() + ": " +
                             (errno ? std::strerror(errno) : "write failed (disk full?)"));
  }
  struct Held {
    double pos;
    std::string text;
    std::string source;
  };
  void write(Split s, const std::string& text, const std::string& source) {
    auto& o = out_[int(s)];
    errno = 0;
    if (stats_[int(s)].docs > 0) o << '\n';  // blank line between documents
    o << text << '\n';
    if (!o) fail_write(tmp_[int(s)]);
    stats_[int(s)].docs += 1;
    const uint64_t chars = utf8::count_chars(text);
    stats_[int(s)].chars += chars;
    stats_[int(s)].bytes += text.size();
    if (s == Split::kVal) val_sources_.push_back(source);
    if (s != Split::kTrain) return;
    SourceStats* src = sources_ ? &(*sources_)[source] : nullptr;
    if (src) src->train_docs += 1, src->train_chars += chars;
    if (!tok_in_) return;
    // The cap keeps the first documents of a source (in reading order) up to cap_ characters.
    if (src && cap_ > 0 && src->tokenizer_chars >= cap_) return;
    errno = 0;
    write_tokenizer_lines(text);
    if (!*tok_in_) fail_write(tok_path_);
    if (src) src->tokenizer_chars += chars;
  }
  // SentencePiece skips lines over max_sentence_length, so long paragraphs go in as sentences.
  void write_tokenizer_lines(const std::string& text) {
    size_t start = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      std::string_view para(text.data() + start, nl - start);
      if (para.size() <= 2000)
        *tok_in_ << para << '\n';
      else
        for (const auto& s : splitter_.split(para)) *tok_in_ << s << '\n';
      start = nl + 1;
    }
  }

  fs::path dir_;
  std::ofstream* tok_in_;
  fs::path tok_path_;
  fs::path tmp_[3];
  std::ofstream out_[3];
  SplitStats stats_[3];
  std::map<std::string, SourceStats>* sources_ = nullptr;
  uint64_t cap_ = 0;
  std::vector<std::string> val_sources_;
  std::vector<Held> held_;
  SentenceSplitter splitter_;
};

}  // namespace

void for_each_split_document(const fs::path& txt, const std::function<void(std::string&&)>& fn) {
  InputStream in(txt.string());
  std::string line, doc;
  while (in.getline(line)) {
    if (line.empty()) {
      if (!doc.empty()) fn(std::move(doc));
      doc.clear();
      continue;
    }
    if (!doc.empty()) doc += '\n';
    doc += line;
  }
  if (!doc.empty()) fn(std::move(doc));
}

int train_tokenizer_into(TokenizerTrainOptions opts, const fs::path& out_dir) {
  fs::create_directories(out_dir);
  const std::string prefix = (out_dir / (".tokenizer.tmp-" + std::to_string(::getpid()))).string();
  opts.model_prefix = prefix;
  try {
    train_tokenizer(opts);
  } catch (const std::runtime_error& e) {
    // "Vocabulary size is too high (32000). Please set it to a value <= 9876."
    static const std::regex kMax(R"(value <= (\d+))");
    std::cmatch m;
    if (!std::regex_search(e.what(), m, kMax)) throw;
    const int fit = std::stoi(m[1].str());
    std::cerr << "note: the corpus supports at most " << fit << " pieces; training with vocab size "
              << fit << " instead of " << opts.vocab_size << "\n";
    opts.vocab_size = fit;
    train_tokenizer(opts);
  }
  // SentencePiece ignores a failed write of its model file (found by the full fault walk: a
  // truncated model was renamed into place); load it before it takes the final name.
  try {
    Tokenizer::load(prefix + ".model");
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot write " + prefix +
                             ".model: SentencePiece wrote an incomplete model (disk full or I/O "
                             "error?): " + e.what());
  }
  fsync_file(prefix + ".model");
  fs::rename(prefix + ".model", out_dir / "tokenizer.model");
  fs::rename(prefix + ".vocab", out_dir / "tokenizer.vocab");
  fsync_dir(out_dir);
  const int got = Tokenizer::load((out_dir / "tokenizer.model").string())->vocab_size();
  if (got < opts.vocab_size)
    std::cerr << "note: the corpus yielded only " << got << " pieces (asked for " << opts.vocab_size
              << ")\n";
  return got;
}

SplitStats tokenize_split_file(const fs::path& txt, const fs::path& bin, const Tokenizer& tok,
                               int threads, bool progress) {
  threads = std::max(1, threads);
  SplitStats st;
  TokenShardWriter writer(bin, static_cast<uint32_t>(tok.vocab_size()), SpecialIds::kEos);
  Progress prog("tokenize " + txt.stem().string(), fs::file_size(txt), progress);
  std::vector<std::string> batch;
  size_t batch_bytes = 0;
  auto flush = [&] {
    std::vector<std::vector<int>> ids(batch.size());
    std::vector<std::thread> pool;
    std::exception_ptr err;
    std::mutex err_mu;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        try {
          for (size_t i = t; i < batch.size(); i += threads) ids[i] = tok.encode(batch[i]);
        } catch (...) {
          std::lock_guard<std::mutex> l(err_mu);
          err = std::current_exception();
        }
      });
    for (auto& th : pool) th.join();
    if (err) std::rethrow_exception(err);
    for (size_t i = 0; i < batch.size(); ++i) {
      const uint64_t chars = utf8::count_chars(batch[i]);
      writer.add_document(ids[i], chars);
      st.docs += 1;
      st.chars += chars;
      st.bytes += batch[i].size() + 2;  // with the separator, to match the file size for ETA
      st.tokens += ids[i].size() + 1;
    }
    prog.update(st.docs, st.bytes);
    batch.clear();
    batch_bytes = 0;
  };
  for_each_split_document(txt, [&](std::string&& doc) {
    batch_bytes += doc.size();
    batch.push_back(std::move(doc));
    if (batch.size() >= 4096 || batch_bytes >= (8u << 20)) flush();
  });
  if (!batch.empty()) flush();
  writer.finish();
  prog.update(st.docs, st.bytes, true);
  st.bytes = 0;
  return st;
}

std::string pipeline_stats_json(const PipelineStats& s) {
  using nlohmann::json;
  auto stage = [](const StageCount& c) { return json{{"docs", c.docs}, {"chars", c.chars}}; };
  json j;
  j["stages"] = {{"read", stage(s.read)},
                 {"cleaned", stage(s.cleaned)},
                 {"exact_dedup", stage(s.after_exact)},
                 {"near_dedup", stage(s.after_near)}};
  j["dropped"] = s.dropped;
  j["exact_duplicates"] = s.exact_duplicates;
  j["held_out_texts"] = s.held_out_texts;
  j["near_duplicates"] = s.near_duplicates;
  j["input_errors"] = s.input_errors;
  for (const auto& [name, sp] : s.splits)
    j["splits"][name] = {
        {"docs", sp.docs}, {"chars", sp.chars}, {"bytes", sp.bytes}, {"tokens", sp.tokens}};
  j["val_chars_per_token"] = s.val_chars_per_token;
  json sources = json::object();
  uint64_t tok_total = 0;
  for (const auto& [name, src] : s.sources) tok_total += src.tokenizer_chars;
  for (const auto& [name, src] : s.sources) {
    json o = {{"train_docs", src.train_docs}, {"train_chars", src.train_chars},
              {"val_docs", src.val_docs},     {"val_chars", src.val_chars},
              {"val_tokens", src.val_tokens}, {"val_chars_per_token", src.val_chars_per_token()}};
    if (s.tokenizer_trained) {
      o["tokenizer_chars"] = src.tokenizer_chars;
      o["tokenizer_share"] = tok_total ? double(src.tokenizer_chars) / double(tok_total) : 0.0;
    }
    sources[name] = o;
  }
  j["sources"] = sources;
  j["tokenizer_source_cap_chars"] = s.tokenizer_source_cap_chars;
  j["vocab_size"] = s.vocab_size;
  j["seconds"] = s.seconds;
  j["special_ids"] = {{"pad", SpecialIds::kPad},
                      {"unk", SpecialIds::kUnk},
                      {"bos", SpecialIds::kBos},
                      {"eos", SpecialIds::kEos}};
  return j.dump(2) + "\n";
}

namespace {

// A source is one --input as given: a file, or a directory with every file under it (the Debian
// help pages are one source, not 1,667), named by its last path component.
std::string input_name(const std::string& input) {
  fs::path p = fs::path(input).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "dir/"
  return p.filename().string();
}

// Characters per token of each source's val documents (sources in val file order).
void measure_val_sources(const fs::path& val_txt, const std::vector<std::string>& sources,
                         const Tokenizer& tok, std::map<std::string, SourceStats>& out) {
  size_t i = 0;
  for_each_split_document(val_txt, [&](std::string&& doc) {
    const std::string& src = i < sources.size() ? sources[i] : std::string("?");
    ++i;
    auto& s = out[src];
    s.val_docs += 1;
    s.val_chars += utf8::count_chars(doc);
    s.val_tokens += tok.encode(doc).size();
  });
}

// read -> clean -> dedup -> split; fills the text stages of `st` and writes the .txt files.
void build_text_splits(const PipelineConfig& cfg, const fs::path& tok_input, PipelineStats& st,
                       std::vector<std::string>* val_sources) {
  CorpusReader reader(cfg.reader);
  uint64_t printed = 0;  // the first 20 errors go to stderr, all of them into the counts
  reader.on_error = [&printed](const InputError& e) {
    if (++printed <= 20)
      std::cerr << "warning: " << e.to_string() << "\n";
    else if (printed == 21)
      std::cerr << "warning: more input errors (counted in stats.json)\n";
  };
  const TextCleaner cleaner(cfg.cleaner);
  HeldOutTexts held_out(cfg.cleaner);
  for (const auto& f : cfg.exclude) st.held_out_texts += held_out.add_file(f);
  ExactDedup exact;
  std::unique_ptr<NearDedup> near;
  if (cfg.near_dedup) near = std::make_unique<NearDedup>(cfg.near);
  const DatasetSplit splitter(cfg.split);
  std::ofstream tok_in;
  if (cfg.tokenize && cfg.tokenizer.empty()) {
    errno = 0;
    tok_in.open(tok_input, std::ios::binary | std::ios::trunc);
    if (!tok_in.is_open())
      throw std::runtime_error("cannot create " + tok_input.string() + ": " +
                               (errno ? std::strerror(errno) : "open failed"));
  }
  SplitFiles files(cfg.output_dir, tok_in.is_open() ? &tok_in : nullptr, tok_input);
  files.set_source_accounting(&st.sources, cfg.tokenizer_source_cap_chars);
  Progress prog("read+clean", 0, cfg.progress);
  uint64_t raw_bytes = 0;
  std::string source;  // the input being read
  auto sink = [&](RawDocument&& doc) {
    st.read.docs += 1;
    st.read.chars += utf8::count_chars(doc.text);
    raw_bytes += doc.text.size();
    CleanResult r = cleaner.clean(doc.text);
    prog.update(st.read.docs, raw_bytes);
    if (!r.kept()) {
      st.dropped[drop_reason_name(r.reason)] += 1;
      return;
    }
    if (held_out.contains(r.text)) {
      st.dropped["held_out"] += 1;
      return;
    }
    const uint64_t chars = utf8::count_chars(r.text);
    st.cleaned.docs += 1;
    st.cleaned.chars += chars;
    if (exact.is_duplicate(r.text)) return void(++st.exact_duplicates);
    st.after_exact.docs += 1;
    st.after_exact.chars += chars;
    if (near && near->is_duplicate(r.text)) return void(++st.near_duplicates);
    st.after_near.docs += 1;
    st.after_near.chars += chars;
    const Split split = splitter.assign(r.text);
    const double pos = splitter.position(r.text);
    files.add(split, pos, std::move(r.text), source);
    if (cfg.max_docs && st.after_near.docs >= cfg.max_docs) throw StopReading{};
  };
  try {
    for (const auto& input : cfg.inputs) {
      source = input_name(input);
      reader.read({input}, sink);
    }
  } catch (const StopReading&) {
  }
  prog.update(st.read.docs, raw_bytes, true);
  st.input_errors = reader.error_count();
  files.commit(st.splits);
  *val_sources = files.val_sources();
  if (tok_in.is_open()) {
    errno = 0;
    tok_in.close();
    if (!tok_in)
      throw std::runtime_error("cannot write " + tok_input.string() + ": " +
                               (errno ? std::strerror(errno) : "write failed (disk full?)"));
  }
}

}  // namespace

PipelineStats run_data_pipeline(const PipelineConfig& cfg) {
  if (cfg.inputs.empty()) throw std::runtime_error("no inputs given");
  PipelineStats st;
  fs::create_directories(cfg.output_dir);
  // stats.json, written last, marks a finished directory: a run that fails midway over an
  // older one must not leave the old mark beside a mix of new and old files.
  fs::remove(cfg.output_dir / "stats.json");
  const fs::path tok_input =
      cfg.output_dir / (".tokenizer_input.txt.tmp-" + std::to_string(::getpid()));
  auto t0 = Clock::now();
  std::vector<std::string> val_sources;
  st.tokenizer_source_cap_chars = cfg.tokenizer_source_cap_chars;
  try {
    build_text_splits(cfg, tok_input, st, &val_sources);
  } catch (...) {
    std::error_code ec;
    fs::remove(tok_input, ec);
    throw;
  }
  st.seconds["read_clean_dedup_split"] = since(t0);
  if (st.splits["train"].docs == 0) {
    std::error_code ec;
    fs::remove(tok_input, ec);
    throw std::runtime_error("no documents left after cleaning (" + std::to_string(st.read.docs) +
                             " read); check the inputs or relax --min-hangul/--min-chars");
  }
  if (cfg.tokenize) {
    t0 = Clock::now();
    std::shared_ptr<Tokenizer> tok;
    if (cfg.tokenizer.empty()) {
      TokenizerTrainOptions o = cfg.tokenizer_train;
      o.input_files = {tok_input.string()};
      if (cfg.progress)
        std::cerr << "[tokenizer] training " << o.model_type << " with " << o.vocab_size
                  << " pieces on the train split (" << st.splits["train"].bytes / 1000000
                  << " MB; minutes for large corpora, SentencePiece prints nothing meanwhile)\n";
      try {
        train_tokenizer_into(o, cfg.output_dir);
      } catch (...) {
        std::error_code ec;
        fs::remove(tok_input, ec);
        throw;
      }
      fs::remove(tok_input);
      st.tokenizer_trained = true;
      tok = Tokenizer::load((cfg.output_dir / "tokenizer.model").string());
    } else {
      tok = Tokenizer::load(cfg.tokenizer);
      write_file_atomic(cfg.output_dir / "tokenizer.model", tok->model_bytes());
    }
    st.vocab_size = tok->vocab_size();
    st.seconds["tokenizer"] = since(t0);
    t0 = Clock::now();
    for (const char* s : {"train", "val", "test"}) {
      SplitStats sh = tokenize_split_file(cfg.output_dir / (std::string(s) + ".txt"),
                                          cfg.output_dir / (std::string(s) + ".bin"), *tok,
                                          cfg.threads, cfg.progress);
      st.splits[s].tokens = sh.tokens;
    }
    st.seconds["tokenize"] = since(t0);
    const auto& v = st.splits["val"];
    if (v.tokens > v.docs)
      st.val_chars_per_token = static_cast<double>(v.chars) / (v.tokens - v.docs);
    measure_val_sources(cfg.output_dir / "val.txt", val_sources, *tok, st.sources);
  }
  write_file_atomic(cfg.output_dir / "stats.json", pipeline_stats_json(st));
  return st;
}

}  // namespace ktl
