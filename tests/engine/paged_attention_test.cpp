// Paged attention (both paths) against a naive dense twin over several block layouts, GQA
// groupings and context lengths that are not a multiple of the block size.
#include "core/engine/paged_attention.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

namespace ktl {
namespace {

// Naive twin: per query row and head, softmax(q k^T / sqrt(Dh)) v over keys 0..pos.
torch::Tensor naive_attention(const torch::Tensor& q,  // [T, H, Dh]
                              const torch::Tensor& k,  // [S, KV, Dh]
                              const torch::Tensor& v,  // [S, KV, Dh]
                              int start) {
  const int64_t T = q.size(0), H = q.size(1), Dh = q.size(2), KV = k.size(1);
  auto out = torch::zeros_like(q);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kvh = h / (H / KV), ctx = start + t + 1;
      auto kk = k.narrow(0, 0, ctx).select(1, kvh);                       // [ctx, Dh]
      auto sc = kk.matmul(q[t][h]) / std::sqrt(static_cast<double>(Dh));  // [ctx]
      out[t][h] = sc.softmax(0).matmul(v.narrow(0, 0, ctx).select(1, kvh));
    }
  return out;
}

// Sequence s has ctx[s] positions, the last ntok[s] of them query rows of this step (rows laid
// out one sequence after the other); its random K/V are written into a one-layer pool of NB
// blocks, block b of the whole run at block_of(b).
struct PagedSetup {
  PagedKvPool pool;
  std::vector<AttnSeq> seqs;
  std::vector<torch::Tensor> ks, vs;  // per sequence: [ctx, KV, Dh]
  int rows = 0;
};

template <class BlockOf>
PagedSetup fill_pool(int KV, int Dh, int BS, int NB, const std::vector<int>& ctx,
                     const std::vector<int>& ntok, const BlockOf& block_of) {
  PagedSetup p{PagedKvPool(1, NB, BS, KV, Dh), {}, {}, {}, 0};
  int next = 0;
  for (size_t s = 0; s < ctx.size(); ++s) {
    AttnSeq a;
    a.num_tokens = ntok[s];
    a.start = ctx[s] - ntok[s];
    a.row = p.rows;
    p.rows += a.num_tokens;
    for (int b = 0; b < (ctx[s] + BS - 1) / BS; ++b, ++next)
      a.block_table.push_back(block_of(next));
    p.ks.push_back(torch::randn({ctx[s], KV, Dh}));
    p.vs.push_back(torch::randn({ctx[s], KV, Dh}));
    AttnSeq all = a;
    all.start = 0;
    all.num_tokens = ctx[s];
    write_kv(p.pool.k[0], p.pool.v[0], compute_slots({all}, BS), p.ks.back(), p.vs.back());
    p.seqs.push_back(a);
  }
  EXPECT_LE(next, NB);
  return p;
}

// Every sequence's rows of `got` against the naive dense twin.
void expect_equals_twin(const torch::Tensor& got, const torch::Tensor& q, const PagedSetup& p,
                        const std::string& what) {
  for (size_t s = 0; s < p.seqs.size(); ++s) {
    const auto& a = p.seqs[s];
    auto twin = naive_attention(q.narrow(0, a.row, a.num_tokens), p.ks[s], p.vs[s], a.start);
    EXPECT_TRUE(torch::allclose(got.narrow(0, a.row, a.num_tokens), twin, 1e-5, 1e-5))
        << what << " seq " << s;
  }
}

TEST(PagedAttention, InPlaceKernelEqualsNaiveDenseOverLayoutsAndGqa) {
  torch::manual_seed(11);
  struct Case {
    int H, KV, Dh, BS;
  };
  for (Case c : {Case{4, 2, 16, 4}, Case{6, 2, 24, 3}, Case{8, 1, 64, 16}, Case{4, 4, 20, 1},
                 Case{4, 2, 128, 5}, Case{12, 4, 64, 16}, Case{5, 1, 64, 8}, Case{4, 4, 64, 16},
                 Case{6, 1, 128, 4}}) {
    // Decode rows at several lengths (1, not multiples of BS, exactly a block), a short chunk,
    // in scrambled, non-contiguous blocks.
    const int NB = 64;
    const PagedSetup p = fill_pool(c.KV, c.Dh, c.BS, NB, {1, 5, c.BS, 2 * c.BS + 1, 37, 9},
                                   {1, 1, 1, 1, 1, 3}, [&](int b) { return (b * 37 + 5) % NB; });
    auto q = torch::randn({p.rows, c.H, c.Dh});
    for (AttnPath path : {AttnPath::kKernel, AttnPath::kGather, AttnPath::kAuto}) {
      expect_equals_twin(paged_attention(q, p.pool.k[0], p.pool.v[0], p.seqs, path), q, p,
                         "H " + std::to_string(c.H) + " KV " + std::to_string(c.KV) + " BS " +
                             std::to_string(c.BS) + " path " +
                             std::to_string(static_cast<int>(path)));
    }
  }
}

// Prefill chunks longer than one dense call's query rows (128) are attended in parts: each part
// sees exactly its causal keys, whatever the chunk's start.
TEST(PagedAttention, LongChunksEqualNaiveDenseAcrossQueryParts) {
  torch::manual_seed(12);
  const int H = 4, KV = 2, Dh = 16, BS = 16, NB = 64;
  const PagedSetup p =
      fill_pool(KV, Dh, BS, NB, {129, 350, 256}, {129, 300, 128}, [](int b) { return b; });
  auto q = torch::randn({p.rows, H, Dh});
  expect_equals_twin(paged_attention(q, p.pool.k[0], p.pool.v[0], p.seqs, AttnPath::kGather), q, p,
                     "gather");
}

}  // namespace
}  // namespace ktl
