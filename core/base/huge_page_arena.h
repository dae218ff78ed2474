// Memory for the weights a decode step streams end to end, in transparent huge pages where the
// OS gives them (Linux THP in "always" or "madvise" mode).
//
// Why: a 1-stream decode step reads every weight once, so its speed is the memory read rate. On
// 4 KB pages each page costs a TLB walk and the hardware prefetchers stop at its edge: one thread
// read 19 GB/s here on 4 KB pages and 34 GB/s on 2 MB pages (AMD EPYC Zen 4,
// bench/machine_limits.cpp), and int8 1-stream decode on model_small went from 80 to 102 tok/s.
// Debian ships THP in "madvise" mode, so memory must ask for it.
//
// Allocations are carved from chunks reserved 2 MB-aligned and advised MADV_HUGEPAGE before
// their first touch. Pages are only faulted in when written, so a chunk's unused tail costs no
// memory beyond the 2 MB page it starts in. Memory is given back when the arena is destroyed,
// not per allocation: hold the arena (shared_ptr) as long as any allocation is in use, and use
// it for data that lives as long as the arena (a model's weights).
//
// Thread-safety: allocate() may be called from any thread (a mutex guards the bump pointer).
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace ktl {

class HugePageArena {
 public:
  static constexpr size_t kHugePage = size_t{2} << 20;
  // chunk_bytes: the virtual size reserved at a time (rounded up to kHugePage); a larger
  // request gets a chunk of its own.
  explicit HugePageArena(size_t chunk_bytes = size_t{256} << 20);
  ~HugePageArena();
  HugePageArena(const HugePageArena&) = delete;
  HugePageArena& operator=(const HugePageArena&) = delete;

  // `bytes` of uninitialised memory aligned to `align` (a power of two, at most kHugePage),
  // valid until the arena is destroyed. Throws std::bad_alloc when the OS refuses.
  void* allocate(size_t bytes, size_t align = 64);

  size_t bytes_allocated() const;  // the sum of the requests, with alignment padding
  size_t bytes_reserved() const;   // virtual size of the chunks (not memory in use)
  // Whether the chunks were advised as huge pages (false where THP is off or not Linux).
  bool huge_pages_advised() const { return advised_; }

 private:
  struct Chunk {
    char* base = nullptr;
    size_t size = 0, used = 0;
  };
  size_t chunk_bytes_;
  bool advised_;
  mutable std::mutex mu_;
  std::vector<Chunk> chunks_;
  size_t allocated_ = 0;
};

// "always" or "madvise" in /sys/kernel/mm/transparent_hugepage/enabled (false elsewhere).
bool transparent_huge_pages_enabled();

}  // namespace ktl
