// Block bookkeeping for the paged KV cache (vLLM-style), without tensors.
//
// The KV pool holds `num_blocks` blocks of `block_size` token slots each. A sequence owns a block
// table (block ids in order; token i lives in block table[i / block_size], slot i % block_size).
// Blocks are ref-counted: a full block whose tokens were computed is content-addressed by
// hash(previous block's hash, its tokens) and shared by every sequence with the same prefix.
// A sequence's cache salt (the LoRA adapter it runs under; 0 = the base model) seeds the chain:
// the same tokens under another adapter have other K/V, so their blocks are never shared.
// When its last user frees it, a cached block stays in the free queue with its contents intact
// and can be revived by a later prefix lookup until it is evicted (reallocated, LRU first).
//
// Allocation never throws on exhaustion: allocate_slots() returns false and changes nothing.
//
// Thread-safety: none; the engine thread owns the manager.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace ktl {

struct KvCacheStats {
  int num_blocks = 0;
  int free_blocks = 0;          // ref count 0 (cached-but-evictable ones included)
  int cached_blocks = 0;        // blocks currently addressable by prefix hash
  uint64_t prefix_queries = 0;  // prompt tokens looked up in the prefix cache
  uint64_t prefix_hits = 0;     // of those, found in the cache
  uint64_t evictions = 0;       // cached blocks reallocated for other content
};

class KvCacheManager {
 public:
  KvCacheManager(int num_blocks, int block_size, bool enable_prefix_cache = true);
  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  int block_size() const { return block_size_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int num_free_blocks() const { return static_cast<int>(free_queue_.size()); }
  bool has_sequence(uint64_t seq) const { return tables_.count(seq) != 0; }

  // For a sequence without blocks: attaches the longest run of cached full blocks matching the
  // start of `tokens` (leaving at least one token to compute, so the last position's logits
  // exist) and returns how many tokens they cover (a multiple of block_size). Only blocks
  // published under the same `salt` match; the sequence keeps the salt for cache_full_blocks.
  int attach_cached_prefix(uint64_t seq, const std::vector<int>& tokens, uint64_t salt = 0);

  // Grows the sequence's block table to hold `num_tokens` tokens. Returns false, allocating
  // nothing, when the free queue is too short.
  bool allocate_slots(uint64_t seq, int num_tokens);

  // Releases the sequence's blocks past the first `num_tokens` tokens (rejected draft tokens'
  // slots). Blocks already published stay: truncation never reaches below them.
  void truncate(uint64_t seq, int num_tokens);

  // Publishes the sequence's full blocks whose tokens are all computed ([0, num_computed)) in
  // the prefix cache. `tokens` is the sequence's token list (at least num_computed long).
  // `salt` as for attach_cached_prefix (a sequence's blocks are all published under one salt).
  void cache_full_blocks(uint64_t seq, const std::vector<int>& tokens, int num_computed,
                         uint64_t salt = 0);

  // Releases every block of the sequence (cached ones stay revivable). No-op when unknown.
  void free(uint64_t seq);

  // The sequence's block table (empty when unknown).
  const std::vector<int>& block_table(uint64_t seq) const;
  int ref_count(int block) const { return blocks_[block].ref_count; }
  KvCacheStats stats() const;

 private:
  struct Block {
    int ref_count = 0;
    bool cached = false;  // present in hash_to_block_
    uint64_t hash = 0;
    uint64_t salt = 0;        // the cache salt it was published under (guards collisions)
    std::vector<int> tokens;  // the block's tokens when cached (guards hash collisions)
    std::list<int>::iterator free_it;
    bool in_free_queue = false;
  };
  struct Table {
    std::vector<int> blocks;
    int num_cached_blocks = 0;     // leading blocks already published in the prefix cache
    std::vector<uint64_t> hashes;  // chained hash of each published block
  };

  static uint64_t chain_hash(uint64_t prev, const int* tokens, int n);
  int pop_free_block();  // LRU head; evicts its cache entry
  void take_from_free_queue(int block);
  void release(int block);

  int block_size_;
  bool enable_prefix_cache_;
  std::vector<Block> blocks_;
  std::list<int> free_queue_;  // front = least recently freed = evicted first
  std::unordered_map<uint64_t, int> hash_to_block_;
  std::unordered_map<uint64_t, Table> tables_;
  uint64_t prefix_queries_ = 0;
  uint64_t prefix_hits_ = 0;
  uint64_t evictions_ = 0;
};

}  // namespace ktl
