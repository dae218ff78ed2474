// The paged-attention row kernel against a naive twin (plain loops in double: softmax of
// q.k / sqrt(Dh) over keys 0..pos, weighted sum of V) over block layouts, GQA groupings, head
// sizes with and without a specialised copy (64, 128), and positions around block edges.
#include "core/kernels/paged_attention_row.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace ktl {
namespace {

// out [H, Dh] of the naive twin; k, v pools [NB, BS, KV, Dh].
std::vector<double> naive_row(const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v, const std::vector<int>& table, int pos,
                              const PagedAttnShape& s) {
  const int H = s.heads, KV = s.kv_heads, Dh = s.head_dim, BS = s.block_size;
  std::vector<double> out(static_cast<size_t>(H) * Dh, 0.0);
  auto at = [&](const std::vector<float>& pool, int j, int kvh, int d) {
    const int64_t slot = static_cast<int64_t>(table[j / BS]) * BS + j % BS;
    return double(pool[(slot * KV + kvh) * Dh + d]);
  };
  for (int h = 0; h < H; ++h) {
    const int kvh = h / (H / KV);
    std::vector<double> sc(pos + 1);
    for (int j = 0; j <= pos; ++j) {
      double t = 0;
      for (int d = 0; d < Dh; ++d) t += double(q[h * Dh + d]) * at(k, j, kvh, d);
      sc[j] = t / std::sqrt(double(Dh));
    }
    const double mx = *std::max_element(sc.begin(), sc.end());
    double sum = 0;
    for (auto& x : sc) sum += (x = std::exp(x - mx));
    for (int j = 0; j <= pos; ++j)
      for (int d = 0; d < Dh; ++d) out[h * Dh + d] += sc[j] / sum * at(v, j, kvh, d);
  }
  return out;
}

std::vector<float> randn(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(PagedAttentionRow, EqualsTheNaiveTwinOverLayoutsGqaAndHeadSizes) {
  std::mt19937 rng(11);
  int tested = 0;
  for (PagedAttnShape s :
       {PagedAttnShape{4, 2, 16, 4}, PagedAttnShape{6, 2, 24, 3}, PagedAttnShape{8, 1, 64, 16},
        PagedAttnShape{4, 4, 20, 1}, PagedAttnShape{4, 2, 128, 5}, PagedAttnShape{12, 4, 64, 16}}) {
    const int NB = 24;
    const size_t pool = static_cast<size_t>(NB) * s.block_size * s.kv_heads * s.head_dim;
    const auto k = randn(pool, rng), v = randn(pool, rng);
    std::vector<int> table(NB);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);  // blocks in no particular order
    std::vector<float> scores;
    for (int pos : {0, 4, s.block_size - 1, s.block_size, 2 * s.block_size + 1, 36}) {
      if (pos < 0 || pos >= NB * s.block_size) continue;
      const auto q = randn(static_cast<size_t>(s.heads) * s.head_dim, rng);
      const auto twin = naive_row(q, k, v, table, pos, s);
      std::vector<float> out(q.size(), 0.0f);
      paged_attention_row(q.data(), out.data(), k.data(), v.data(), table.data(), pos, s, 0,
                          s.kv_heads, scores);
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], twin[i], 1e-5)
            << "H " << s.heads << " Dh " << s.head_dim << " pos " << pos << " at " << i;
      // One KV head at a time (the engine's split for one stream): the same numbers, and only
      // that group's query heads written.
      std::vector<float> split(q.size(), -7.0f);
      const int G = s.heads / s.kv_heads;
      for (int kvh = 0; kvh < s.kv_heads; ++kvh) {
        paged_attention_row(q.data(), split.data(), k.data(), v.data(), table.data(), pos, s, kvh,
                            kvh + 1, scores);
        EXPECT_EQ(split[(kvh + 1) * G * s.head_dim - 1], out[(kvh + 1) * G * s.head_dim - 1]);
        if (kvh + 1 < s.kv_heads) {
          EXPECT_EQ(split[(kvh + 1) * G * s.head_dim], -7.0f);  // the next group: not yet
        }
      }
      EXPECT_EQ(split, out);
      ++tested;
    }
  }
  EXPECT_GT(tested, 30);
}

}  // namespace
}  // namespace ktl
