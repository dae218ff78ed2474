#include "core/base/huge_page_arena.h"

#include <cstdint>
#include <fstream>
#include <new>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define KTL_HAVE_MMAP 1
#endif

namespace ktl {

namespace {

size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

#if defined(KTL_HAVE_MMAP)
// Reserves `size` bytes aligned to kHugePage: maps size + kHugePage and trims both ends.
char* map_aligned(size_t size) {
  const size_t span = size + HugePageArena::kHugePage;
  void* p = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t raw = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = round_up(raw, HugePageArena::kHugePage);
  if (aligned > raw) munmap(p, aligned - raw);
  const uintptr_t end = aligned + size, raw_end = raw + span;
  if (raw_end > end) munmap(reinterpret_cast<void*>(end), raw_end - end);
  return reinterpret_cast<char*>(aligned);
}
#endif

}  // namespace

bool transparent_huge_pages_enabled() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string s;
  if (!std::getline(f, s)) return false;
  return s.find("[always]") != std::string::npos || s.find("[madvise]") != std::string::npos;
}

HugePageArena::HugePageArena(size_t chunk_bytes)
    : chunk_bytes_(round_up(chunk_bytes == 0 ? kHugePage : chunk_bytes, kHugePage)),
      advised_(transparent_huge_pages_enabled()) {}

HugePageArena::~HugePageArena() {
  for (const Chunk& c : chunks_) {
#if defined(KTL_HAVE_MMAP)
    munmap(c.base, c.size);
#else
    ::operator delete(c.base, std::align_val_t(kHugePage));
#endif
  }
}

void* HugePageArena::allocate(size_t bytes, size_t align) {
  if (align == 0 || (align & (align - 1)) != 0 || align > kHugePage) throw std::bad_alloc();
  std::lock_guard<std::mutex> lock(mu_);
  for (Chunk& c : chunks_) {  // first fit: earlier chunks' tails take small requests
    const size_t at = round_up(c.used, align);
    if (at + bytes <= c.size) {
      allocated_ += at + bytes - c.used;
      c.used = at + bytes;
      return c.base + at;
    }
  }
  Chunk c;
  c.size = round_up(bytes > chunk_bytes_ ? bytes : chunk_bytes_, kHugePage);
#if defined(KTL_HAVE_MMAP)
  c.base = map_aligned(c.size);
#if defined(MADV_HUGEPAGE)
  // Before the first touch, so the faults themselves take huge pages.
  if (advised_) madvise(c.base, c.size, MADV_HUGEPAGE);
#endif
#else
  c.base = static_cast<char*>(::operator new(c.size, std::align_val_t(kHugePage)));
#endif
  c.used = bytes;
  allocated_ += bytes;
  chunks_.push_back(c);
  return c.base;
}

size_t HugePageArena::bytes_allocated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return allocated_;
}

size_t HugePageArena::bytes_reserved() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const Chunk& c : chunks_) n += c.size;
  return n;
}

}  // namespace ktl
