#include "core/data/input_stream.h"

#include <bzlib.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ktl {

InputStream::InputStream(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "rb");
  if (!file_) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  unsigned char magic[3] = {0, 0, 0};
  size_t got = std::fread(magic, 1, 3, file_);
  std::rewind(file_);
  if (got >= 2 && magic[0] == 0x1F && magic[1] == 0x8B) {
    codec_ = Codec::kGzip;
    std::fclose(file_);
    file_ = nullptr;
    gz_ = gzopen(path.c_str(), "rb");
    if (!gz_) throw std::runtime_error("cannot open " + path + " as gzip");
    gzbuffer(static_cast<gzFile>(gz_), 1 << 17);
  } else if (got == 3 && magic[0] == 'B' && magic[1] == 'Z' && magic[2] == 'h') {
    codec_ = Codec::kBzip2;
    int err = BZ_OK;
    bz_ = BZ2_bzReadOpen(&err, file_, 0, 0, nullptr, 0);
    if (err != BZ_OK) throw std::runtime_error("cannot open " + path + " as bzip2");
  }
}

InputStream::~InputStream() {
  if (gz_) gzclose(static_cast<gzFile>(gz_));
  if (bz_) {
    int err;
    BZ2_bzReadClose(&err, static_cast<BZFILE*>(bz_));
  }
  if (file_) std::fclose(file_);
}

uint64_t InputStream::compressed_bytes_read() const {
  if (gz_) return static_cast<uint64_t>(gzoffset(static_cast<gzFile>(gz_)));
  if (file_) {
    long p = std::ftell(file_);
    return p < 0 ? 0 : static_cast<uint64_t>(p);
  }
  return 0;
}

size_t InputStream::read_raw(char* out, size_t n) {
  const std::string where = path_ + ":" + std::to_string(line_no_ + 1);
  if (codec_ == Codec::kPlain) {
    size_t got = std::fread(out, 1, n, file_);
    if (got == 0 && std::ferror(file_)) throw std::runtime_error(where + ": read error");
    return got;
  }
  if (codec_ == Codec::kGzip) {
    auto* gz = static_cast<gzFile>(gz_);
    int got = gzread(gz, out, static_cast<unsigned>(n));
    int err = Z_OK;
    const char* msg = gzerror(gz, &err);
    if (got < 0 || (err != Z_OK && err != Z_STREAM_END))
      throw std::runtime_error(where + ": corrupt or truncated gzip data (" + msg + ")");
    return static_cast<size_t>(got);
  }
  // bzip2, continuing into the next stream of a multi-stream file.
  while (bz_) {
    int err = BZ_OK;
    int got = BZ2_bzRead(&err, static_cast<BZFILE*>(bz_), out, static_cast<int>(n));
    if (err == BZ_OK) return static_cast<size_t>(got);
    if (err != BZ_STREAM_END) {
      const char* why = err == BZ_UNEXPECTED_EOF ? "truncated bzip2 data" : "corrupt bzip2 data";
      throw std::runtime_error(where + ": " + why);
    }
    void* unused = nullptr;
    int n_unused = 0;
    BZ2_bzReadGetUnused(&err, static_cast<BZFILE*>(bz_), &unused, &n_unused);
    std::string rest(static_cast<char*>(unused), n_unused);
    BZ2_bzReadClose(&err, static_cast<BZFILE*>(bz_));
    bz_ = nullptr;
    if (rest.empty()) {  // peek: another stream after this one?
      int c = std::fgetc(file_);
      if (c == EOF) return static_cast<size_t>(got);
      rest.push_back(static_cast<char>(c));
    }
    bz_ = BZ2_bzReadOpen(&err, file_, 0, 0, rest.data(), static_cast<int>(rest.size()));
    if (err != BZ_OK) throw std::runtime_error(where + ": corrupt bzip2 data");
    if (got > 0) return static_cast<size_t>(got);
  }
  return 0;  // the last stream ended
}

bool InputStream::fill() {
  if (eof_) return false;
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  const size_t old = buf_.size();
  buf_.resize(old + (1 << 16));
  size_t got = 0;
  try {
    got = read_raw(&buf_[old], 1 << 16);
  } catch (...) {
    buf_.resize(old);
    eof_ = true;
    throw;
  }
  buf_.resize(old + got);
  if (got == 0) eof_ = true;
  return got > 0;
}

bool InputStream::getline(std::string& line) {
  while (true) {
    size_t nl = buf_.find('\n', pos_);
    if (nl != std::string::npos) {
      line.assign(buf_, pos_, nl - pos_);
      pos_ = nl + 1;
      break;
    }
    if (!fill()) {
      if (pos_ >= buf_.size()) return false;
      line.assign(buf_, pos_, std::string::npos);
      pos_ = buf_.size();
      break;
    }
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  ++line_no_;
  return true;
}

std::string InputStream::read_all() {
  std::string out, line;
  while (getline(line)) {
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace ktl
