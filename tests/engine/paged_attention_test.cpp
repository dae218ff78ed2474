// Paged attention (both paths) against a naive dense twin over several block layouts, GQA
// groupings and context lengths that are not a multiple of the block size.
#include "core/engine/paged_attention.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

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

TEST(PagedAttention, InPlaceKernelEqualsNaiveDenseOverLayoutsAndGqa) {
  torch::manual_seed(11);
  struct Case {
    int H, KV, Dh, BS;
  };
  for (Case c : {Case{4, 2, 16, 4}, Case{6, 2, 24, 3}, Case{8, 1, 64, 16}, Case{4, 4, 20, 1},
                 Case{4, 2, 128, 5}, Case{12, 4, 64, 16}, Case{5, 1, 64, 8}, Case{4, 4, 64, 16},
                 Case{6, 1, 128, 4}}) {
    const int NB = 64;
    PagedKvPool pool(1, NB, c.BS, c.KV, c.Dh);
    // Decode rows at several lengths (1, not multiples of BS, exactly a block), a short chunk.
    std::vector<int> ctx = {1, 5, c.BS, 2 * c.BS + 1, 37, 9};
    std::vector<int> ntok = {1, 1, 1, 1, 1, 3};
    std::vector<AttnSeq> seqs;
    std::vector<torch::Tensor> ks, vs;
    int row = 0, next = 0;
    for (size_t s = 0; s < ctx.size(); ++s) {
      AttnSeq a;
      a.num_tokens = ntok[s];
      a.start = ctx[s] - ntok[s];
      a.row = row;
      row += a.num_tokens;
      // Scrambled, non-contiguous blocks.
      for (int b = 0; b < (ctx[s] + c.BS - 1) / c.BS; ++b, ++next)
        a.block_table.push_back((next * 37 + 5) % NB);
      ks.push_back(torch::randn({ctx[s], c.KV, c.Dh}));
      vs.push_back(torch::randn({ctx[s], c.KV, c.Dh}));
      AttnSeq all = a;
      all.start = 0;
      all.num_tokens = ctx[s];
      write_kv(pool.k[0], pool.v[0], compute_slots({all}, c.BS), ks.back(), vs.back());
      seqs.push_back(a);
    }
    ASSERT_LE(next, NB);
    auto q = torch::randn({row, c.H, c.Dh});
    for (AttnPath p : {AttnPath::kKernel, AttnPath::kGather, AttnPath::kAuto}) {
      auto got = paged_attention(q, pool.k[0], pool.v[0], seqs, p);
      for (size_t s = 0; s < seqs.size(); ++s) {
        const auto& a = seqs[s];
        auto twin = naive_attention(q.narrow(0, a.row, a.num_tokens), ks[s], vs[s], a.start);
        EXPECT_TRUE(torch::allclose(got.narrow(0, a.row, a.num_tokens), twin, 1e-5, 1e-5))
            << "H " << c.H << " KV " << c.KV << " BS " << c.BS << " seq " << s << " path "
            << static_cast<int>(p);
      }
    }
  }
}

// Prefill chunks longer than one dense call's query rows (128) are attended in parts: each part
// sees exactly its causal keys, whatever the chunk's start.
TEST(PagedAttention, LongChunksEqualNaiveDenseAcrossQueryParts) {
  torch::manual_seed(12);
  const int H = 4, KV = 2, Dh = 16, BS = 16, NB = 64;
  PagedKvPool pool(1, NB, BS, KV, Dh);
  std::vector<int> ctx = {129, 350, 256}, ntok = {129, 300, 128};
  std::vector<AttnSeq> seqs;
  std::vector<torch::Tensor> ks, vs;
  int row = 0, next = 0;
  for (size_t s = 0; s < ctx.size(); ++s) {
    AttnSeq a;
    a.num_tokens = ntok[s];
    a.start = ctx[s] - ntok[s];
    a.row = row;
    row += a.num_tokens;
    for (int b = 0; b < (ctx[s] + BS - 1) / BS; ++b, ++next) a.block_table.push_back(next);
    ks.push_back(torch::randn({ctx[s], KV, Dh}));
    vs.push_back(torch::randn({ctx[s], KV, Dh}));
    AttnSeq all = a;
    all.start = 0;
    all.num_tokens = ctx[s];
    write_kv(pool.k[0], pool.v[0], compute_slots({all}, BS), ks.back(), vs.back());
    seqs.push_back(a);
  }
  ASSERT_LE(next, NB);
  auto q = torch::randn({row, H, Dh});
  auto got = paged_attention(q, pool.k[0], pool.v[0], seqs, AttnPath::kGather);
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto& a = seqs[s];
    auto twin = naive_attention(q.narrow(0, a.row, a.num_tokens), ks[s], vs[s], a.start);
    EXPECT_TRUE(torch::allclose(got.narrow(0, a.row, a.num_tokens), twin, 1e-5, 1e-5)) << s;
  }
}

}  // namespace
}  // namespace ktl
