// SHA-256 (FIPS 180-4), incremental. Two block functions: portable scalar code and, on x86 CPUs
// with the SHA extensions (cpuid "sha_ni"), the SHA-NI instructions (about 8x faster: checkpoint
// verification hashes every file, hundreds of MB at a load). The fast one is chosen once per
// process; tests compare both on the same bytes.
// Thread-safety: a Sha256 object is single-threaded; the free functions are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ktl {

class Sha256 {
 public:
  enum class Impl { kAuto, kScalar, kShaNi };
  // kShaNi on a CPU without it falls back to kScalar (see impl()).
  explicit Sha256(Impl impl = Impl::kAuto);

  void update(const void* data, size_t n);
  // Finishes the hash; the object must not be updated afterwards.
  std::string hex_digest();
  Impl impl() const { return impl_; }

 private:
  void blocks(const uint8_t* p, size_t n_blocks);
  Impl impl_;
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

// True when this CPU (and OS) can run the SHA-NI block function.
bool sha256_has_sha_ni();

}  // namespace ktl
