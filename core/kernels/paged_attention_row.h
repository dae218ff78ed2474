// The inner kernel of paged attention (core/engine/paged_attention.h): one query row of one
// sequence against its keys 0..pos, read in place from the paged K/V pools through the block
// table: scores q.k / sqrt(Dh), softmax, the weighted sum of V. No dense copy of the context;
// each K/V row is read once for all query heads of its GQA group. The engine's wrapper splits a
// step's rows (and, for one stream, its KV heads) over threads.
//
// Portable loops that the compiler vectorises: copies for AVX-512, AVX2 and baseline x86-64 picked
// at run time (KTL_SIMD_DISPATCH, capped by --kernels), NEON on AArch64.
//
// Thread-safety: pure apart from writing `out` and the caller's `scores` scratch.
#pragma once

#include <cstdint>
#include <vector>

namespace ktl {

struct PagedAttnShape {
  int heads = 0;       // H query heads
  int kv_heads = 0;    // KV heads (H a multiple of KV: GQA groups of H / KV)
  int head_dim = 0;    // Dh
  int block_size = 0;  // BS slots per KV block
};

// out [H, Dh] for the query heads of KV heads [kv0, kv1) (the others untouched), from q [H, Dh],
// the row at absolute position pos. k_pool, v_pool: [num_blocks, BS, KV, Dh]; block_table lists
// the sequence's blocks (at least (pos + BS) / BS of them). scores: scratch, [H, pos + 1].
void paged_attention_row(const float* q, float* out, const float* k_pool, const float* v_pool,
                         const int* block_table, int pos, const PagedAttnShape& shape, int kv0,
                         int kv1, std::vector<float>& scores);

}  // namespace ktl
