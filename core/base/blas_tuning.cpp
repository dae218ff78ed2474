#include "core/base/blas_tuning.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "core/base/dynamic_symbol.h"

namespace ktl {

namespace {

// Environment between the executions: the core ktl set, what OpenBLAS reported before, and why
// a choice was rejected. KTL_TEST_BLAS_REPORTED_CORE pretends OpenBLAS reported that core (tests
// of the re-exec path on CPUs OpenBLAS reads correctly).
constexpr const char* kEnvCore = "OPENBLAS_CORETYPE";
constexpr const char* kEnvChosen = "KTL_BLAS_CORETYPE";
constexpr const char* kEnvReported = "KTL_BLAS_REPORTED";
constexpr const char* kEnvRejected = "KTL_BLAS_REJECTED";
constexpr const char* kEnvTestReported = "KTL_TEST_BLAS_REPORTED_CORE";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string call_string_fn(const char* name) {
  auto fn = find_symbol<char* (*)()>(name);
  const char* s = fn ? fn() : nullptr;
  return s ? s : "";
}

// OpenBLAS's own name for the core it loaded; "" when the BLAS is not OpenBLAS.
std::string openblas_core() {
  std::string s = call_string_fn("openblas_get_corename");
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

float lcg_value(uint32_t* state) {  // deterministic values in [-1, 1)
  *state = *state * 1664525u + 1013904223u;
  return static_cast<float>(*state >> 8) / float(1 << 23) - 1.0f;
}

bool check_shape(const SgemmFn& sgemm, int m, int n, int k, std::string* why) {
  uint32_t state = static_cast<uint32_t>(m * 131 + n * 7 + k);
  std::vector<float> a(size_t(m) * k), b(size_t(k) * n), c(size_t(m) * n, 0.0f);
  for (auto& x : a) x = lcg_value(&state);
  for (auto& x : b) x = lcg_value(&state);
  sgemm(m, n, k, a.data(), b.data(), c.data());
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double ref = 0, mag = 0;  // naive twin, in double
      for (int p = 0; p < k; ++p) {
        ref += double(a[size_t(i) * k + p]) * b[size_t(p) * n + j];
        mag += std::fabs(double(a[size_t(i) * k + p]) * b[size_t(p) * n + j]);
      }
      const double got = c[size_t(i) * n + j];
      if (!(std::fabs(got - ref) <= 1e-5 * mag + 1e-6)) {
        if (why) {
          *why = "SGEMM " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
                 " differs from the naive loop at [" + std::to_string(i) + "," + std::to_string(j) +
                 "]: " + std::to_string(got) + " vs " + std::to_string(ref);
        }
        return false;
      }
    }
  }
  return true;
}

// In the program ktl re-executed with its choice: is that core loaded, and does it compute?
bool verify_chosen_core(const std::string& chosen, std::string* why) {
  const std::string now = openblas_core();
  if (lower(now) != lower(chosen)) {
    *why = "OpenBLAS loaded " + (now.empty() ? std::string("nothing") : now) + " instead";
    return false;
  }
  SgemmFn sgemm = loaded_sgemm();
  if (!sgemm) {
    *why = "no cblas_sgemm to check it with";
    return false;
  }
  return sgemm_agrees_with_naive(sgemm, why);
}

}  // namespace

bool is_generic_blas_core(const std::string& core) {
  static const char* const kGeneric[] = {
      "prescott", "core2",      "penryn",     "dunnington",  "nehalem", "sandybridge",  "atom",
      "katmai",   "coppermine", "northwood",  "banias",      "opteron", "opteron_sse3", "barcelona",
      "bobcat",   "bulldozer",  "piledriver", "steamroller", "generic", "unknown"};
  const std::string c = lower(core);
  return std::find(std::begin(kGeneric), std::end(kGeneric), c) != std::end(kGeneric);
}

bool is_avx512_blas_core(const std::string& core) {
  const std::string c = lower(core);
  return c == "skylakex" || c == "cooperlake" || c == "sapphirerapids";
}

std::string best_blas_core_for(const CpuFeatures& cpu) {
  if (cpu.avx512f && cpu.avx512bw && cpu.avx512vl) {
    return cpu.avx512_bf16 ? "Cooperlake" : "SkylakeX";
  }
  if (cpu.avx2 && cpu.fma) return "Haswell";
  return "";
}

BlasCoreChoice choose_blas_core(const BlasCoreInputs& in) {
  if (!in.user_env.empty()) return {"", "OPENBLAS_CORETYPE=" + in.user_env + " set outside ktl"};
  if (in.reported.empty()) return {"", "the BLAS is not OpenBLAS"};
  if (!in.rejected.empty()) return {"", "ktl's choice was rejected: " + in.rejected};
  const std::string best = best_blas_core_for(in.cpu);
  if (is_avx512_blas_core(in.reported) && best != "SkylakeX" && best != "Cooperlake") {
    // The CPU runs AVX-512, the kernel ceiling (kernel_ceiling.h) does not allow it.
    if (best.empty()) return {"", "OpenBLAS took " + in.reported + "; no core fits the ceiling"};
    return {best, "OpenBLAS took " + in.reported + "; the kernel ceiling allows " + best};
  }
  if (!is_generic_blas_core(in.reported)) return {"", "chosen by OpenBLAS"};
  if (best.empty()) return {"", "generic core; the CPU has no AVX2+FMA for a better one"};
  return {best, "OpenBLAS took the CPU (" + in.cpu.vendor + " family " +
                    std::to_string(in.cpu.family) + " model " + std::to_string(in.cpu.model) +
                    ") for a " + in.reported + "; its features allow " + best};
}

bool sgemm_agrees_with_naive(const SgemmFn& sgemm, std::string* why) {
  // Odd sizes hit the kernels' edge paths; the larger one their main blocking.
  const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {37, 53, 131}, {96, 128, 256}};
  for (const auto& s : shapes) {
    if (!check_shape(sgemm, s[0], s[1], s[2], why)) return false;
  }
  return true;
}

SgemmFn loaded_sgemm() {
  using Cblas = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                         float, float*, int);
  auto fn = find_symbol<Cblas>("cblas_sgemm");
  if (!fn) return {};
  return [fn](int m, int n, int k, const float* a, const float* b, float* c) {
    constexpr int kRowMajor = 101, kNoTrans = 111;
    fn(kRowMajor, kNoTrans, kNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
  };
}

bool prepare_blas_core_env() {
  const std::string chosen = env(kEnvChosen), current = env(kEnvCore);
  if (!chosen.empty() && chosen == current) {
    std::string why;
    if (verify_chosen_core(chosen, &why)) return false;  // keep it
    spdlog::warn("BLAS: OPENBLAS_CORETYPE={} rejected ({}); running with OpenBLAS's own choice",
                 chosen, why);
    unsetenv(kEnvCore);
    unsetenv(kEnvChosen);
    setenv(kEnvRejected, (chosen + ": " + why).c_str(), 1);
    return true;
  }
  if (!chosen.empty()) unsetenv(kEnvChosen);  // stale: OPENBLAS_CORETYPE was changed since
  std::string reported = openblas_core();
  if (!env(kEnvTestReported).empty() && current.empty() && !reported.empty())
    reported = env(kEnvTestReported);
  BlasCoreChoice c =
      choose_blas_core({detect_cpu_features(), reported, current, env(kEnvRejected)});
  if (c.core.empty()) return false;
  spdlog::debug("BLAS: {}; re-executing with OPENBLAS_CORETYPE={}", c.reason, c.core);
  setenv(kEnvCore, c.core.c_str(), 1);
  setenv(kEnvChosen, c.core.c_str(), 1);
  setenv(kEnvReported, reported.c_str(), 1);
  return true;
}

BlasStatus blas_status() {
  BlasStatus s;
  s.core = openblas_core();
  s.config = call_string_fn("openblas_get_config");
  const std::string chosen = env(kEnvChosen), current = env(kEnvCore);
  if (s.core.empty()) {
    s.note = "the BLAS is not OpenBLAS";
  } else if (!chosen.empty() && chosen == current && lower(s.core) == lower(chosen)) {
    s.chosen_by_ktl = true;
    s.note = "chosen by ktl: OpenBLAS reported " + env(kEnvReported) + "; SGEMM check passed";
  } else if (!env(kEnvRejected).empty()) {
    s.note = "chosen by OpenBLAS; ktl's choice was rejected: " + env(kEnvRejected);
  } else if (!current.empty()) {
    s.note = "OPENBLAS_CORETYPE=" + current + " set outside ktl";
  } else {
    s.note = "chosen by OpenBLAS";
  }
  return s;
}

}  // namespace ktl
