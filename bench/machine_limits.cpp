// The limits a decode step runs against on this machine, measured rather than quoted:
//  - memory read bandwidth (GB/s) over a buffer far larger than the caches, the bound of
//    1-stream decode, which reads every weight once per token: on 4 KB pages (malloc's, and a
//    file mapping's, as llama.cpp reads its weights) and on huge pages (HugePageArena, as ktl
//    holds its weights);
//  - int8 multiply-add peak (AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw + vpmaddwd) and fp32 FMA
//    peak (AVX-512 and AVX2), in G operations per second (a multiply-add counts 2), the bound
//    of many-stream decode, which reuses each weight for every stream.
// Each figure is the best of several passes on T threads at once (T = --threads, default: the
// cores this process may run on). Prints one JSON line.
//
//   ktl_machine_limits [--threads T] [--buffer-mb MB]
//
// Per-function target attributes, picked from cpuid; no LibTorch.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/base/huge_page_arena.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

// Runs fn(t) on T threads that start together; returns the wall seconds of the slowest.
double run_threads(int threads, const std::function<void(int)>& fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      fn(t);
    });
  while (ready.load() < threads) std::this_thread::yield();
  const auto t0 = Clock::now();
  go.store(true);
  for (auto& th : pool) th.join();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Read bandwidth: each thread sums its slice with wide loads (the sum keeps the loads live).
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t sum_avx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i*)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i*)(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i*)(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i*)(p + i + 96)));
  }
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t o[4];
  _mm256_store_si256((__m256i*)o, s);
  return o[0] + o[1] + o[2] + o[3];
}
#endif

uint64_t sum_scalar(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    s += v;
  }
  return s;
}

double read_bandwidth_gbs(int threads, size_t bytes, int passes, bool huge_pages) {
  ktl::HugePageArena arena(bytes);
  auto* buf = huge_pages ? static_cast<uint8_t*>(arena.allocate(bytes, 4096))
                         : static_cast<uint8_t*>(std::aligned_alloc(4096, bytes));
  // First touch from the threads that read, so pages sit near them.
  const size_t slice = bytes / threads / 4096 * 4096;
  run_threads(threads, [&](int t) { std::memset(buf + t * slice, t + 1, slice); });
#if defined(__x86_64__)
  const bool avx2 = __builtin_cpu_supports("avx2");
#else
  const bool avx2 = false;
#endif
  std::vector<uint64_t> sink(threads);
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    const double s = run_threads(threads, [&](int t) {
      const uint8_t* p = buf + t * slice;
#if defined(__x86_64__)
      sink[t] += avx2 ? sum_avx2(p, slice) : sum_scalar(p, slice);
#else
      sink[t] += sum_scalar(p, slice);
#endif
    });
    best = std::max(best, double(slice) * threads / s / 1e9);
  }
  uint64_t all = 0;
  for (uint64_t v : sink) all += v;
  if (!huge_pages) std::free(buf);
  return all == 42 ? best + 1e-12 : best;  // keep the sums observable
}

// Compute peaks: 12 independent accumulators per thread hide each instruction's latency.
constexpr int64_t kIters = 20'000'000;

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int32_t vnni512_loop(int64_t iters) {
  __m512i a[12];
  for (auto& v : a) v = _mm512_setzero_si512();
  const __m512i x = _mm512_set1_epi8(3), w = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < iters; ++i)
    for (auto& v : a) v = _mm512_dpbusd_epi32(v, x, w);
  __m512i s = a[0];
  for (int k = 1; k < 12; ++k) s = _mm512_add_epi32(s, a[k]);
  return _mm512_reduce_add_epi32(s);
}

// x changes every iteration (one add in 37 instructions), so no product is loop-invariant.
__attribute__((target("avx2"))) int32_t avx2_int8_loop(int64_t iters) {
  __m256i a[12], w[12];
  for (int k = 0; k < 12; ++k) {
    a[k] = _mm256_setzero_si256();
    w[k] = _mm256_set1_epi8(int8_t(k - 6));
  }
  const __m256i one = _mm256_set1_epi16(1), step = _mm256_set1_epi8(1);
  __m256i x = _mm256_set1_epi8(3);
  for (int64_t i = 0; i < iters; ++i) {
    for (int k = 0; k < 12; ++k)
      a[k] = _mm256_add_epi32(a[k], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w[k]), one));
    x = _mm256_add_epi8(x, step);
  }
  __m256i s = a[0];
  for (int k = 1; k < 12; ++k) s = _mm256_add_epi32(s, a[k]);
  alignas(32) int32_t o[8];
  _mm256_store_si256((__m256i*)o, s);
  return o[0] + o[7];
}

__attribute__((target("avx512f"))) float fma512_loop(int64_t iters) {
  __m512 a[12];
  for (auto& v : a) v = _mm512_setzero_ps();
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (auto& v : a) v = _mm512_fmadd_ps(v, x, y);
  __m512 s = a[0];
  for (int k = 1; k < 12; ++k) s = _mm512_add_ps(s, a[k]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) float fma256_loop(int64_t iters) {
  __m256 a[12];
  for (auto& v : a) v = _mm256_setzero_ps();
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (auto& v : a) v = _mm256_fmadd_ps(v, x, y);
  __m256 s = a[0];
  for (int k = 1; k < 12; ++k) s = _mm256_add_ps(s, a[k]);
  alignas(32) float o[8];
  _mm256_store_ps(o, s);
  return o[0] + o[7];
}
#endif

// Best G operations per second over passes; ops_per_iter counts a multiply-add as 2.
template <typename Fn>
double peak_gops(int threads, int passes, double ops_per_iter, Fn loop) {
  std::vector<double> sink(threads);
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    const double s = run_threads(threads, [&](int t) { sink[t] += double(loop(kIters)); });
    best = std::max(best, ops_per_iter * kIters * threads / s / 1e9);
  }
  return sink[0] == 1.5 ? best + 1e-12 : best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = int(std::thread::hardware_concurrency());
  size_t buffer_mb = 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads")
      threads = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--buffer-mb")
      buffer_mb = size_t(std::max(64, std::atoi(argv[i + 1])));
    else {
      std::fprintf(stderr, "usage: %s [--threads T] [--buffer-mb MB]\n", argv[0]);
      return 2;
    }
  }
  const size_t bytes = buffer_mb << 20;
  std::printf("{\"threads\":%d", threads);
  for (bool huge : {false, true}) {
    if (huge && !ktl::transparent_huge_pages_enabled()) continue;
    const double bw1 = read_bandwidth_gbs(1, bytes, 5, huge);
    const double bw = threads > 1 ? read_bandwidth_gbs(threads, bytes, 5, huge) : bw1;
    const char* suffix = huge ? "_huge_pages" : "";
    std::printf(",\"read_gb_s_1_thread%s\":%.2f,\"read_gb_s%s\":%.2f", suffix, bw1, suffix, bw);
  }
#if defined(__x86_64__)
  // Per iteration: 12 instructions; vpdpbusd does 64 u8 x s8 multiply-adds, the AVX2 pair
  // 32, an FMA 16 (zmm) or 8 (ymm) multiply-adds.
  if (__builtin_cpu_supports("avx512vnni"))
    std::printf(",\"int8_vnni512_gops\":%.1f", peak_gops(threads, 3, 12 * 64 * 2, vnni512_loop));
  if (__builtin_cpu_supports("avx2"))
    std::printf(",\"int8_avx2_gops\":%.1f", peak_gops(threads, 3, 12 * 32 * 2, avx2_int8_loop));
  if (__builtin_cpu_supports("avx512f"))
    std::printf(",\"fp32_fma512_gflops\":%.1f", peak_gops(threads, 3, 12 * 16 * 2, fma512_loop));
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    std::printf(",\"fp32_fma256_gflops\":%.1f", peak_gops(threads, 3, 12 * 8 * 2, fma256_loop));
#endif
  std::printf("}\n");
  return 0;
}
