#include "core/base/cpu_features.h"

#include <cstdint>
#include <cstring>

#include "core/base/kernel_ceiling.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KTL_X86 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace ktl {

#if KTL_X86
namespace {

struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned sub) {
  Regs r;
  if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) r = Regs{};
  return r;
}

uint64_t xgetbv0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

bool bit(unsigned v, int i) {
  return (v >> i) & 1u;
}

}  // namespace
#endif

#if defined(__aarch64__)
namespace {

// What the OS reports of the ARM extensions ktl's kernels use.
void detect_arm(CpuFeatures& f) {
#if defined(__linux__)
  // The bits of <asm/hwcap.h>, spelled out for C libraries whose headers predate them.
  constexpr unsigned long kHwcapAsimdDp = 1ul << 20, kHwcap2I8mm = 1ul << 13;
  f.neon_dot = (getauxval(AT_HWCAP) & kHwcapAsimdDp) != 0;
  f.i8mm = (getauxval(AT_HWCAP2) & kHwcap2I8mm) != 0;
#elif defined(__APPLE__)
  auto on = [](const char* name) {
    int v = 0;
    size_t n = sizeof v;
    return sysctlbyname(name, &v, &n, nullptr, 0) == 0 && v != 0;
  };
  f.neon_dot = on("hw.optional.arm.FEAT_DotProd");
  f.i8mm = on("hw.optional.arm.FEAT_I8MM");
#endif
}

}  // namespace
#endif

CpuFeatures detect_native_cpu_features() {
  CpuFeatures f;
#if KTL_X86
  Regs v = cpuid(0, 0);
  char vendor[13] = {};
  std::memcpy(vendor, &v.b, 4);
  std::memcpy(vendor + 4, &v.d, 4);
  std::memcpy(vendor + 8, &v.c, 4);
  f.vendor = vendor;
  const unsigned max_leaf = v.a;
  Regs l1 = cpuid(1, 0);
  const int base_family = (l1.a >> 8) & 0xf, base_model = (l1.a >> 4) & 0xf;
  f.family = base_family == 0xf ? base_family + int((l1.a >> 20) & 0xff) : base_family;
  f.model = (base_family == 0x6 || base_family == 0xf) ? base_model + int(((l1.a >> 16) & 0xf) << 4)
                                                       : base_model;
  // The OS must save the registers: XMM|YMM (bits 1, 2), opmask|ZMM (5-7), AMX tiles (17, 18).
  const uint64_t xcr0 = bit(l1.c, 27) ? xgetbv0() : 0;  // OSXSAVE
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;
  if (max_leaf < 7) return f;
  Regs l7 = cpuid(7, 0), l7s1 = cpuid(7, 1);
  f.fma = os_avx && bit(l1.c, 12);
  f.avx2 = os_avx && bit(l7.b, 5);
  f.avx512f = os_avx512 && bit(l7.b, 16);
  f.avx512bw = os_avx512 && bit(l7.b, 30);
  f.avx512vl = os_avx512 && bit(l7.b, 31);
  f.avx512_vnni = os_avx512 && bit(l7.c, 11);
  f.avx_vnni = os_avx && bit(l7s1.a, 4);
  f.avx512_bf16 = os_avx512 && bit(l7s1.a, 5);
  f.amx = os_amx && bit(l7.d, 24);
#endif
#if defined(__aarch64__)
  detect_arm(f);
#endif
  return f;
}

CpuFeatures detect_cpu_features() {
  return apply_kernel_ceiling(detect_native_cpu_features(), kernel_ceiling());
}

std::vector<std::pair<std::string, bool>> cpu_feature_flags(const CpuFeatures& f) {
  return {{"avx2", f.avx2},
          {"fma", f.fma},
          {"avx512f", f.avx512f},
          {"avx512bw", f.avx512bw},
          {"avx512vl", f.avx512vl},
          {"avx512_vnni", f.avx512_vnni},
          {"avx_vnni", f.avx_vnni},
          {"avx512_bf16", f.avx512_bf16},
          {"amx", f.amx},
          {"asimddp", f.neon_dot},
          {"i8mm", f.i8mm}};
}

std::string cpu_feature_list(const CpuFeatures& f) {
  std::string out;
  for (const auto& [name, on] : cpu_feature_flags(f)) {
    if (!on) continue;
    if (!out.empty()) out += ' ';
    out += name;
  }
  return out.empty() ? "none" : out;
}

}  // namespace ktl
