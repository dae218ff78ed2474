// Attention over a paged KV cache: K/V pools per layer, addressed through block tables.
//
// The engine owns one PagedKvPool: per layer, K and V of shape [num_blocks, block_size,
// n_kv_heads, head_dim] (fp32), on the model's device. A step's tokens from all scheduled sequences
// are flattened into one batch of N rows; each sequence contributes a contiguous run of rows (a
// prefill chunk or one decode token). write_kv() stores the step's new K/V into their slots (slot =
// block * block_size + offset), then paged_attention() computes causal GQA attention for every row
// against its own sequence's keys 0..position, read through the block table.
//
// Two paths, same results (tests check both against dense attention):
//  - kKernel: a direct CPU loop reading K/V in place, block by block through the block table
//    (no dense copy); each K/V row is read once for all query heads of its GQA group. The loop
//    is core/kernels/paged_attention_row.h (torch-free); this file splits rows over threads. Best for
//    decode rows, where a gather would copy the whole context for one query.
//  - kGather: index_select the sequence's blocks into a dense [S, KV, Dh] buffer and run the
//    matmul attention (ops.h causal_attention); best for long prefill chunks (BLAS-bound).
//  kAuto picks per sequence by chunk length. A pool off the CPU (CUDA, MPS) always takes kGather
//  (torch ops only); asking it for kKernel throws.
//
// Thread-safety: functions are pure apart from writing into the pools; the engine thread calls.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace ktl {

struct PagedKvPool {
  PagedKvPool() = default;
  PagedKvPool(int num_layers, int num_blocks, int block_size, int n_kv_heads, int head_dim,
              torch::Device device = torch::kCPU);
  static int64_t bytes_per_block(int num_layers, int block_size, int n_kv_heads, int head_dim);
  std::vector<torch::Tensor> k, v;  // per layer: [num_blocks, block_size, KV, Dh]
  int num_blocks = 0, block_size = 0;
};

// One sequence's run of rows in the flattened batch.
struct AttnSeq {
  int row = 0;                   // first row in the batch
  int num_tokens = 0;            // rows (query tokens) of this sequence
  int start = 0;                 // absolute position of its first row
  std::vector<int> block_table;  // covers start + num_tokens tokens
};

enum class AttnPath { kAuto, kKernel, kGather };

// Slot of every row: block_table[pos / block_size] * block_size + pos % block_size. [N] int64
torch::Tensor compute_slots(const std::vector<AttnSeq>& seqs, int block_size);

// Stores the step's K/V: pool.view({-1, KV, Dh})[slots[i]] = k_new[i].
void write_kv(torch::Tensor& k_pool, torch::Tensor& v_pool, const torch::Tensor& slots,  // [N]
              const torch::Tensor& k_new,   // [N, KV, Dh]
              const torch::Tensor& v_new);  // [N, KV, Dh]

torch::Tensor paged_attention(const torch::Tensor& q,       // [N, H, Dh]
                              const torch::Tensor& k_pool,  // [NB, BS, KV, Dh]
                              const torch::Tensor& v_pool,  // [NB, BS, KV, Dh]
                              const std::vector<AttnSeq>& seqs,
                              AttnPath path = AttnPath::kAuto);  // -> [N, H, Dh]

}  // namespace ktl
