#include "core/scheduling/kv_cache_manager.h"

#include <algorithm>
#include <stdexcept>

namespace ktl {

namespace {
uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
const std::vector<int> kEmptyTable;
}  // namespace

KvCacheManager::KvCacheManager(int num_blocks, int block_size, bool enable_prefix_cache)
    : block_size_(block_size), enable_prefix_cache_(enable_prefix_cache) {
  if (num_blocks <= 0 || block_size <= 0) {
    throw std::invalid_argument("KvCacheManager: num_blocks and block_size must be positive");
  }
  blocks_.resize(num_blocks);
  for (int b = 0; b < num_blocks; ++b) {
    blocks_[b].free_it = free_queue_.insert(free_queue_.end(), b);
    blocks_[b].in_free_queue = true;
  }
}

uint64_t KvCacheManager::chain_hash(uint64_t prev, const int* tokens, int n) {
  uint64_t h = mix(prev ^ 0x6b746c5f6b763031ULL);
  for (int i = 0; i < n; ++i) h = mix(h ^ static_cast<uint32_t>(tokens[i]));
  return h;
}

void KvCacheManager::take_from_free_queue(int block) {
  Block& b = blocks_[block];
  if (b.in_free_queue) {
    free_queue_.erase(b.free_it);
    b.in_free_queue = false;
  }
}

int KvCacheManager::pop_free_block() {
  int id = free_queue_.front();
  take_from_free_queue(id);
  Block& b = blocks_[id];
  if (b.cached) {  // evict: its contents are about to be overwritten
    hash_to_block_.erase(b.hash);
    b.cached = false;
    b.tokens.clear();
    ++evictions_;
  }
  b.ref_count = 1;
  return id;
}

void KvCacheManager::release(int block) {
  Block& b = blocks_[block];
  if (--b.ref_count == 0) {
    b.free_it = free_queue_.insert(free_queue_.end(), block);
    b.in_free_queue = true;
  }
}

int KvCacheManager::attach_cached_prefix(uint64_t seq, const std::vector<int>& tokens,
                                         uint64_t salt) {
  Table& t = tables_[seq];
  if (!t.blocks.empty()) throw std::logic_error("attach_cached_prefix: sequence has blocks");
  if (!enable_prefix_cache_ || tokens.empty()) return 0;
  const int max_blocks = static_cast<int>(tokens.size() - 1) / block_size_;
  prefix_queries_ += tokens.size();
  uint64_t h = salt;  // the chain starts at the salt: another adapter's blocks never match
  for (int i = 0; i < max_blocks; ++i) {
    const int* toks = tokens.data() + static_cast<size_t>(i) * block_size_;
    h = chain_hash(h, toks, block_size_);
    auto it = hash_to_block_.find(h);
    if (it == hash_to_block_.end()) break;
    Block& b = blocks_[it->second];
    if (b.salt != salt || !std::equal(b.tokens.begin(), b.tokens.end(), toks))
      break;  // hash collision
    take_from_free_queue(it->second);
    ++b.ref_count;
    t.blocks.push_back(it->second);
    t.hashes.push_back(h);
  }
  t.num_cached_blocks = static_cast<int>(t.blocks.size());
  const int hit = t.num_cached_blocks * block_size_;
  prefix_hits_ += hit;
  return hit;
}

bool KvCacheManager::allocate_slots(uint64_t seq, int num_tokens) {
  Table& t = tables_[seq];
  const int need = (num_tokens + block_size_ - 1) / block_size_;
  const int extra = need - static_cast<int>(t.blocks.size());
  if (extra <= 0) return true;
  if (extra > num_free_blocks()) return false;
  for (int i = 0; i < extra; ++i) t.blocks.push_back(pop_free_block());
  return true;
}

void KvCacheManager::truncate(uint64_t seq, int num_tokens) {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  Table& t = it->second;
  const int keep = std::max(t.num_cached_blocks, (num_tokens + block_size_ - 1) / block_size_);
  while (static_cast<int>(t.blocks.size()) > keep) {
    release(t.blocks.back());
    t.blocks.pop_back();
  }
}

void KvCacheManager::cache_full_blocks(uint64_t seq, const std::vector<int>& tokens,
                                       int num_computed, uint64_t salt) {
  if (!enable_prefix_cache_) return;
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  Table& t = it->second;
  const int full = std::min(num_computed / block_size_, static_cast<int>(t.blocks.size()));
  for (int i = t.num_cached_blocks; i < full; ++i) {
    const int* toks = tokens.data() + static_cast<size_t>(i) * block_size_;
    const uint64_t prev = i == 0 ? salt : t.hashes[i - 1];
    const uint64_t h = chain_hash(prev, toks, block_size_);
    t.hashes.push_back(h);
    Block& b = blocks_[t.blocks[i]];
    // Another sequence may have published the same content first: keep that one.
    if (!b.cached && hash_to_block_.count(h) == 0) {
      b.cached = true;
      b.hash = h;
      b.salt = salt;
      b.tokens.assign(toks, toks + block_size_);
      hash_to_block_[h] = t.blocks[i];
    }
  }
  t.num_cached_blocks = std::max(t.num_cached_blocks, full);
}

void KvCacheManager::free(uint64_t seq) {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  // Tail blocks first, so they are evicted before the (more shareable) head of the prefix.
  const std::vector<int>& blocks = it->second.blocks;
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) release(*b);
  tables_.erase(it);
}

const std::vector<int>& KvCacheManager::block_table(uint64_t seq) const {
  auto it = tables_.find(seq);
  return it == tables_.end() ? kEmptyTable : it->second.blocks;
}

KvCacheStats KvCacheManager::stats() const {
  KvCacheStats s;
  s.num_blocks = num_blocks();
  s.free_blocks = num_free_blocks();
  s.cached_blocks = static_cast<int>(hash_to_block_.size());
  s.prefix_queries = prefix_queries_;
  s.prefix_hits = prefix_hits_;
  s.evictions = evictions_;
  return s;
}

}  // namespace ktl
