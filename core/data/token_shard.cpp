#include "core/data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/base/sha256.h"

namespace ktl {
namespace {

void encode_header(const TokenShardHeader& h, char* out) {
  std::memset(out, 0, TokenShardHeader::kSize);
  std::memcpy(out, TokenShardHeader::kMagic, 8);
  std::memcpy(out + 8, &h.version, 4);
  std::memcpy(out + 12, &h.token_bytes, 4);
  std::memcpy(out + 16, &h.n_tokens, 8);
  std::memcpy(out + 24, &h.n_docs, 8);
  std::memcpy(out + 32, &h.n_chars, 8);
  std::memcpy(out + 40, &h.vocab_size, 4);
  std::memcpy(out + 44, &h.eos_id, 4);
  std::memcpy(out + 48, h.tokens_sha256.data(), 16);
}

TokenShardHeader decode_header(const char* in, const std::string& path) {
  if (std::memcmp(in, TokenShardHeader::kMagic, 8) != 0)
    throw std::runtime_error(path + ": not a token shard (bad magic)");
  TokenShardHeader h;
  std::memcpy(&h.version, in + 8, 4);
  std::memcpy(&h.token_bytes, in + 12, 4);
  std::memcpy(&h.n_tokens, in + 16, 8);
  std::memcpy(&h.n_docs, in + 24, 8);
  std::memcpy(&h.n_chars, in + 32, 8);
  std::memcpy(&h.vocab_size, in + 40, 4);
  std::memcpy(&h.eos_id, in + 44, 4);
  std::memcpy(h.tokens_sha256.data(), in + 48, 16);
  if (h.version != TokenShardHeader::kVersion)
    throw std::runtime_error(path + ": unsupported shard version " + std::to_string(h.version));
  if (h.token_bytes != 2 && h.token_bytes != 4)
    throw std::runtime_error(path + ": bad token width " + std::to_string(h.token_bytes));
  return h;
}

std::array<uint8_t, 16> digest_prefix(Sha256& sha) {
  const std::string hex = sha.hex_digest();
  std::array<uint8_t, 16> out{};
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

}  // namespace

bool TokenShardHeader::has_checksum() const {
  for (uint8_t b : tokens_sha256)
    if (b) return true;
  return false;
}

TokenShardWriter::TokenShardWriter(const std::filesystem::path& path, uint32_t vocab_size,
                                   uint32_t eos_id)
    : path_(path), tmp_(path.string() + ".tmp-" + std::to_string(::getpid())) {
  h_.vocab_size = vocab_size;
  h_.eos_id = eos_id;
  h_.token_bytes = vocab_size <= 65536 ? 2 : 4;
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd_ < 0)
    throw std::runtime_error("cannot create " + tmp_.string() + ": " + std::strerror(errno));
  char zero[TokenShardHeader::kSize] = {};
  write_bytes(zero, sizeof(zero));  // placeholder; the real header goes in at finish()
  sha_ = std::make_unique<Sha256>();  // from here on, tokens only
}

TokenShardWriter::~TokenShardWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void TokenShardWriter::write_bytes(const void* data, size_t n) {
  if (sha_) sha_->update(data, n);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot write " + path_.string() + ": " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void TokenShardWriter::add_document(const std::vector<int>& ids, uint64_t n_chars) {
  const size_t w = h_.token_bytes;
  buf_.resize((ids.size() + 1) * w);
  char* out = buf_.data();
  auto put = [&](int id) {
    if (id < 0 || static_cast<uint32_t>(id) >= h_.vocab_size)
      throw std::runtime_error("token id " + std::to_string(id) + " outside the vocabulary");
    if (w == 2) {
      uint16_t v = static_cast<uint16_t>(id);
      std::memcpy(out, &v, 2);
    } else {
      uint32_t v = static_cast<uint32_t>(id);
      std::memcpy(out, &v, 4);
    }
    out += w;
  };
  for (int id : ids) put(id);
  put(static_cast<int>(h_.eos_id));
  write_bytes(buf_.data(), buf_.size());
  h_.n_tokens += ids.size() + 1;
  h_.n_docs += 1;
  h_.n_chars += n_chars;
}

void TokenShardWriter::finish() {
  h_.tokens_sha256 = digest_prefix(*sha_);
  char hdr[TokenShardHeader::kSize];
  encode_header(h_, hdr);
  if (::pwrite(fd_, hdr, sizeof(hdr), 0) != static_cast<ssize_t>(sizeof(hdr)) ||
      ::fsync(fd_) != 0) {
    int err = errno;
    throw std::runtime_error("cannot write " + path_.string() + ": " + std::strerror(err));
  }
  if (::close(fd_) != 0) {
    fd_ = -1;
    ::unlink(tmp_.c_str());
    throw std::runtime_error("cannot write " + path_.string() + ": " + std::strerror(errno));
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    ::unlink(tmp_.c_str());
    throw std::runtime_error("cannot rename into " + path_.string() + ": " + std::strerror(errno));
  }
  fsync_dir(path_.parent_path());
}

TokenShardHeader TokenShard::read_header(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    throw std::runtime_error("cannot open " + path.string() + ": " + std::strerror(errno));
  char hdr[TokenShardHeader::kSize];
  ssize_t got = ::pread(fd, hdr, sizeof(hdr), 0);
  ::close(fd);
  if (got != static_cast<ssize_t>(sizeof(hdr)))
    throw std::runtime_error(path.string() + ": truncated shard header");
  return decode_header(hdr, path.string());
}

std::shared_ptr<TokenShard> TokenShard::open(const std::filesystem::path& path) {
  std::shared_ptr<TokenShard> s(new TokenShard());
  s->h_ = read_header(path);
  std::error_code ec;
  const uint64_t actual = std::filesystem::file_size(path, ec);
  // Compared by division: n_tokens * token_bytes can wrap around 2^64 and match a small file.
  const uint64_t hdr = TokenShardHeader::kSize, width = s->h_.token_bytes;
  if (ec || actual < hdr || (actual - hdr) % width != 0 || (actual - hdr) / width != s->h_.n_tokens)
    throw std::runtime_error(path.string() + ": size " + std::to_string(actual) +
                             " does not match its header (" + std::to_string(s->h_.n_tokens) +
                             " tokens of " + std::to_string(s->h_.token_bytes) + " bytes)");
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    throw std::runtime_error("cannot open " + path.string() + ": " + std::strerror(errno));
  void* m = ::mmap(nullptr, actual, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED)
    throw std::runtime_error("cannot map " + path.string() + ": " + std::strerror(errno));
  s->map_ = m;
  s->map_len_ = actual;
  s->path_ = path.string();
  const char* tokens = static_cast<const char*>(m) + TokenShardHeader::kSize;
  if (s->h_.token_bytes == 2)
    s->u16_ = reinterpret_cast<const uint16_t*>(tokens);
  else
    s->u32_ = reinterpret_cast<const uint32_t*>(tokens);
  return s;
}

TokenShard::~TokenShard() {
  if (map_) ::munmap(map_, map_len_);
}

void TokenShard::copy_to(uint64_t begin, uint64_t n, int64_t* out) const {
  if (begin + n > h_.n_tokens) throw std::out_of_range("token range past the end of the shard");
  if (u16_)
    for (uint64_t i = 0; i < n; ++i) out[i] = u16_[begin + i];
  else
    for (uint64_t i = 0; i < n; ++i) out[i] = u32_[begin + i];
}

std::string TokenShard::verify() const {
  if (!h_.has_checksum()) return "";
  Sha256 sha;
  sha.update(static_cast<const char*>(map_) + TokenShardHeader::kSize,
             map_len_ - TokenShardHeader::kSize);
  if (digest_prefix(sha) != h_.tokens_sha256)
    return path_ + ": checksum mismatch (the tokens are corrupt or were modified)";
  return "";
}

uint64_t read_split_char_count(const std::filesystem::path& data_dir, const std::string& split) {
  return TokenShard::read_header(data_dir / (split + ".bin")).n_chars;
}

}  // namespace ktl
