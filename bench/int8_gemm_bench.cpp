// ktl_int8_gemm_bench: the int8 x int8 kernels on model_small's linear shapes, side by side with
// the quantized engine (oneDNN's packed copy) and fp32 BLAS, in one run. Prints ms per call and
// integer GOP/s for each row count (1 and 16: decode; 64-512: prefill). The onednn column is
// oneDNN only above 64 rows (below, PackedLinear::forward runs the int8 kernels).
//
//   ktl_int8_gemm_bench [--rows 1,16,64,512] [--ms 300] [--threads N] [--kernels avx-vnni]
// (--kernels: any Int8Kernels name this CPU runs, neon-i8mm and neon-dot on AArch64)
// Run it with the environment ktl runs with (OMP_WAIT_POLICY=PASSIVE, OPENBLAS_CORETYPE as set).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/blas_tuning.h"
#include "core/base/runtime_tuning.h"
#include "core/engine/kernel_threads.h"
#include "core/engine/packed_linear.h"
#include "core/kernels/int8_gemm.h"

namespace {

using Clock = std::chrono::steady_clock;

// Best-of time per call over ~budget_ms (after one warm-up call).
double time_ms(const std::function<void()>& f, double budget_ms) {
  f();
  double best = 1e30, spent = 0;
  while (spent < budget_ms) {
    const auto t0 = Clock::now();
    f();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    best = std::min(best, ms);
    spent += ms;
  }
  return best;
}

// int8_gemm's int32 part with a chosen tiling (row tiles or packed blocks), parallel as it is.
void s32(ktl::Int8Kernels k, bool packed, const ktl::PackedLinear& l, const torch::Tensor& q,
         const torch::Tensor& ws, const ktl::Int8Rows& x, std::vector<int32_t>& acc) {
  const int64_t out = l.out_features(), in = l.in_features();
  at::parallel_for(0, out, 64, [&](int64_t b, int64_t e) {
    if (packed)
      ktl::int8_dot_s32_packed(k, q.data_ptr<int8_t>(), ws.data_ptr<int32_t>(), in, b, e, x,
                               acc.data(), out);
    else
      ktl::int8_dot_s32(k, q.data_ptr<int8_t>(), ws.data_ptr<int32_t>(), in, b, e, x, acc.data(),
                        out);
  });
}

}  // namespace

int main(int argc, char** argv) {
  ktl::tune_runtime(argc, argv);       // as ktl does: OpenMP waiting, OpenBLAS's core
  ktl::install_kernel_parallel_for();  // the quantizer alone runs on the threads too
  // The onednn column needs oneDNN's packed copy, which ktl no longer makes where the packed
  // int8 kernel runs; ask for it (the gemm() column calls the int8 kernels directly either way).
  setenv("KTL_INT8_PREFILL", "onednn", 0);
  std::vector<int64_t> rows = {1, 16, 64, 512};
  double budget = 300;
  ktl::Int8Kernels kernels = ktl::Int8Kernels::kBest;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--rows") {
      rows.clear();
      std::stringstream ss(argv[i + 1]);
      for (std::string t; std::getline(ss, t, ',');) rows.push_back(std::stoll(t));
    } else if (a == "--kernels") {  // avx512-vnni | avx-vnni | avx2 | neon-i8mm | neon-dot | scalar
      for (auto k :
           {ktl::Int8Kernels::kAvx512Vnni, ktl::Int8Kernels::kAvxVnni, ktl::Int8Kernels::kAvx2,
            ktl::Int8Kernels::kNeonI8mm, ktl::Int8Kernels::kNeonDot, ktl::Int8Kernels::kScalar})
        if (ktl::to_string(k) == std::string(argv[i + 1])) kernels = k;
    } else if (a == "--threads") {
      at::set_num_threads(std::atoi(argv[i + 1]));
    } else if (a == "--ms") {
      budget = std::atof(argv[i + 1]);
    }
  }
  torch::NoGradGuard ng;
  if (std::getenv("KTL_BENCH_PARALLEL_INFO")) std::printf("%s\n", at::get_parallel_info().c_str());
  std::printf("threads %d, int8 kernels %s (packed prefill: %s), BLAS core %s\n",
              at::get_num_threads(), ktl::to_string(kernels),
              ktl::int8_packed_supported(kernels) ? "yes" : "no", ktl::blas_status().core.c_str());
  std::printf("%-8s %5s | %9s %9s %9s %9s %9s | GOP/s tiles packed onednn fp32\n", "layer", "rows",
              "tiles ms", "packed", "onednn", "fp32", "gemm()");
  struct Shape {
    const char* name;
    int64_t out, in;
  };
  for (const Shape s : {Shape{"qkv", 1280, 768}, Shape{"o", 768, 768}, Shape{"gate_up", 4096, 768},
                        Shape{"down", 768, 2048}}) {
    auto w = torch::randn({s.out, s.in}) * 0.05;
    auto l = ktl::PackedLinear::from_float(w, ktl::WeightDtype::kInt8);
    auto [q, sc] = l.int8_parts();
    auto sums = ktl::int8_row_sums(q.data_ptr<int8_t>(), s.out, s.in);
    auto ws = torch::tensor(std::vector<int32_t>(sums.begin(), sums.end()), torch::kInt32);
    for (int64_t n : rows) {
      auto x = torch::randn({n, s.in});
      const auto xq = ktl::quantize_rows_int8(x.data_ptr<float>(), n, s.in);
      std::vector<int32_t> acc(n * s.out);
      const double tiles = time_ms([&] { s32(kernels, false, l, q, ws, xq, acc); }, budget);
      const double packed = ktl::int8_packed_supported(kernels)
                                ? time_ms([&] { s32(kernels, true, l, q, ws, xq, acc); }, budget)
                                : 0;
      const double onednn = l.uses_quantized_engine() ? time_ms([&] { l.forward(x); }, budget) : 0;
      const double fp32 = time_ms([&] { at::linear(x, w); }, budget);
      const double gemm = time_ms([&] { l.forward_int8_gemm(x, kernels); }, budget);
      const double quant =
          time_ms([&] { ktl::quantize_rows_int8(x.data_ptr<float>(), n, s.in, false); }, budget);
      std::printf("         quantize %lld x %lld: %.3f ms\n", static_cast<long long>(n),
                  static_cast<long long>(s.in), quant);
      const double gop = 2.0 * n * s.out * s.in / 1e6;  // per ms -> GOP/s
      std::printf("%-8s %5lld | %9.3f %9.3f %9.3f %9.3f %9.3f | %6.0f %6.0f %6.0f %6.0f\n", s.name,
                  static_cast<long long>(n), tiles, packed, onednn, fp32, gemm, gop / tiles,
                  packed > 0 ? gop / packed : 0, onednn > 0 ? gop / onednn : 0, gop / fp32);
    }
  }
  return 0;
}
