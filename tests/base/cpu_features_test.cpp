#include "core/base/cpu_features.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace ktl {
namespace {

// The flags of /proc/cpuinfo's first "flags" line ("" where there is none).
std::string proc_cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) return " " + line.substr(line.find(':') + 1) + " ";
  }
  return "";
}

bool has_flag(const std::string& flags, const std::string& name) {
  return flags.find(" " + name + " ") != std::string::npos;
}

TEST(CpuFeatures, AgreesWithTheKernelsView) {
  const std::string flags = proc_cpuinfo_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags here";
  const CpuFeatures f = detect_native_cpu_features();  // KTL_KERNELS may be set
  EXPECT_EQ(f.avx2, has_flag(flags, "avx2"));
  EXPECT_EQ(f.fma, has_flag(flags, "fma"));
  EXPECT_EQ(f.avx512f, has_flag(flags, "avx512f"));
  EXPECT_EQ(f.avx512bw, has_flag(flags, "avx512bw"));
  EXPECT_EQ(f.avx512vl, has_flag(flags, "avx512vl"));
  EXPECT_EQ(f.avx512_vnni, has_flag(flags, "avx512_vnni"));
  EXPECT_EQ(f.avx_vnni, has_flag(flags, "avx_vnni"));
  EXPECT_EQ(f.avx512_bf16, has_flag(flags, "avx512_bf16"));
  EXPECT_EQ(f.amx, has_flag(flags, "amx_tile"));
  EXPECT_FALSE(f.vendor.empty());
  EXPECT_GT(f.family, 0);
}

TEST(CpuFeatures, ListNamesTheSetFlagsInOrder) {
  CpuFeatures f;
  EXPECT_EQ(cpu_feature_list(f), "none");
  f.fma = f.avx2 = f.avx512_bf16 = true;
  EXPECT_EQ(cpu_feature_list(f), "avx2 fma avx512_bf16");
  auto flags = cpu_feature_flags(f);
  ASSERT_EQ(flags.size(), 11u);
  EXPECT_EQ(flags.front().first, "avx2");
  EXPECT_EQ(flags[8].first, "amx");
  EXPECT_EQ(flags.back().first, "i8mm");
}

}  // namespace
}  // namespace ktl
