// Binary token shards: the files training streams from (DATA_DIR/{train,val,test}.bin).
//
// Layout (little-endian), 64-byte header then the tokens:
//   0  char[8]  magic "KTLSHARD"
//   8  uint32   version (1)
//   12 uint32   bytes per token: 2 (uint16, when the vocabulary fits) or 4 (uint32)
//   16 uint64   token count
//   24 uint64   document count
//   32 uint64   characters (Unicode code points) of the documents' text, separators excluded;
//               the denominator of bits-per-character
//   40 uint32   vocabulary size
//   44 uint32   end-of-document id (3, </s>)
//   48 16 bytes: the first 16 bytes of the SHA-256 of the tokens (all zero in shards written
//               before it existed: no checksum); checked by TokenShard::verify() (`ktl doctor`)
//   64 tokens; every document's tokens are followed by one </s>
//
// TokenShardWriter streams into "<path>.tmp-<pid>" and renames on finish(): readers never see a
// partial shard. TokenShard memory-maps a finished shard read-only.
// Thread-safety: TokenShard is immutable after open() and safe to read from any thread; a
// TokenShardWriter is single-threaded.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/base/sha256.h"

namespace ktl {

struct TokenShardHeader {
  static constexpr char kMagic[8] = {'K', 'T', 'L', 'S', 'H', 'A', 'R', 'D'};
  static constexpr uint32_t kVersion = 1;
  static constexpr size_t kSize = 64;
  uint32_t version = kVersion;
  uint32_t token_bytes = 2;
  uint64_t n_tokens = 0;
  uint64_t n_docs = 0;
  uint64_t n_chars = 0;
  uint32_t vocab_size = 0;
  uint32_t eos_id = 3;
  std::array<uint8_t, 16> tokens_sha256{};  // prefix of SHA-256(tokens); zero = none
  bool has_checksum() const;
};

class TokenShardWriter {
 public:
  // token_bytes is 2 when vocab_size <= 65536, else 4.
  TokenShardWriter(const std::filesystem::path& path, uint32_t vocab_size, uint32_t eos_id = 3);
  ~TokenShardWriter();  // without finish(): removes the temporary file
  TokenShardWriter(const TokenShardWriter&) = delete;
  TokenShardWriter& operator=(const TokenShardWriter&) = delete;

  // Appends one document's tokens and the end-of-document id.
  void add_document(const std::vector<int>& ids, uint64_t n_chars);
  // Writes the header, fsyncs and renames into place. Throws on I/O errors (e.g. a full disk).
  void finish();
  const TokenShardHeader& header() const { return h_; }

 private:
  void write_bytes(const void* data, size_t n);
  std::filesystem::path path_, tmp_;
  std::unique_ptr<Sha256> sha_;  // of the tokens written so far
  TokenShardHeader h_;
  int fd_ = -1;
  std::vector<char> buf_;
};

class TokenShard {
 public:
  // Maps the file and validates its header and size. Throws std::runtime_error on any mismatch.
  static std::shared_ptr<TokenShard> open(const std::filesystem::path& path);
  static TokenShardHeader read_header(const std::filesystem::path& path);
  ~TokenShard();

  uint64_t size() const { return h_.n_tokens; }
  const TokenShardHeader& header() const { return h_; }
  uint32_t get(uint64_t i) const { return u16_ ? u16_[i] : u32_[i]; }
  // Exactly one of these is non-null, by header().token_bytes.
  const uint16_t* data_u16() const { return u16_; }
  const uint32_t* data_u32() const { return u32_; }
  // Copies tokens [begin, begin + n) widened to int64 (e.g. into a tensor's buffer).
  void copy_to(uint64_t begin, uint64_t n, int64_t* out) const;
  // Hashes the tokens and compares with the header's checksum: "" when they match (or the
  // shard has none), else a message naming the file. Reads the whole shard (~1 s per GB).
  std::string verify() const;

 private:
  TokenShard() = default;
  TokenShardHeader h_;
  std::string path_;
  void* map_ = nullptr;
  size_t map_len_ = 0;
  const uint16_t* u16_ = nullptr;
  const uint32_t* u32_ = nullptr;
};

// Characters (code points) of a split's text, from DATA_DIR/<split>.bin's header.
uint64_t read_split_char_count(const std::filesystem::path& data_dir, const std::string& split);

}  // namespace ktl
