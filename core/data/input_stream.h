// InputStream: reads a plain, gzip or bzip2 file (detected from its first bytes, not its name)
// as one byte stream, line by line. Concatenated gzip members and multi-stream bzip2 files
// (e.g. Wikipedia's *-multistream.xml.bz2) are read to the end.
// Corruption or truncation throws std::runtime_error naming the file and the current line, after
// every complete line before it was delivered.
// Thread-safety: one stream per thread.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

namespace ktl {

class InputStream {
 public:
  enum class Codec { kPlain, kGzip, kBzip2 };

  explicit InputStream(const std::string& path);  // throws when the file cannot be opened
  ~InputStream();
  InputStream(const InputStream&) = delete;
  InputStream& operator=(const InputStream&) = delete;

  // Next line without its '\n' (a trailing '\r' is removed too); false at end of input.
  bool getline(std::string& line);
  // Reads everything that is left.
  std::string read_all();

  long line_number() const { return line_no_; }  // 1-based number of the last line returned
  const std::string& path() const { return path_; }
  Codec codec() const { return codec_; }
  uint64_t compressed_bytes_read() const;  // for progress against the file size

 private:
  size_t read_raw(char* buf, size_t n);  // decompressed bytes; 0 at end; throws on corruption
  bool fill();

  std::string path_;
  Codec codec_ = Codec::kPlain;
  FILE* file_ = nullptr;
  void* gz_ = nullptr;  // gzFile
  void* bz_ = nullptr;  // BZFILE*
  bool eof_ = false;
  std::string buf_;
  size_t pos_ = 0;
  long line_no_ = 0;
};

}  // namespace ktl
