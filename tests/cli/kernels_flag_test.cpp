// --kernels / KTL_KERNELS: `ktl bench --json` reports the ceiling and the kernels it chose under
// it, a bad value is a usage error, and greedy output under `--kernels avx2` is the native
// kernels' output (the int8 sums are exact in every kernel; float parts differ only in rounding,
// which these prompts do not bring near a tie).
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/base/cpu_features.h"
#include "tests/support/cli_process.h"
#include "tests/support/tiny_checkpoint.h"

namespace {

using ktl::cli_process::CliRun;
using ktl::cli_process::json_lines;
using ktl::cli_process::run_ktl;

const std::string kBench = "bench --random-init --model-config " KTL_SOURCE_DIR
                           "/configs/model_tiny.yaml --streams 1 --prompt-tokens 8 "
                           "--gen-tokens 4 --threads 1 --dtype int8 --json ";

TEST(KernelsFlag, BenchReportsTheCeilingAndTheKernelsUnderIt) {
  if (!ktl::detect_native_cpu_features().avx2) GTEST_SKIP() << "no AVX2 here";
  for (const std::string how : {"--kernels avx2", "env"}) {
    if (how == "env") setenv("KTL_KERNELS", "avx2", 1);  // the child inherits it
    const CliRun r = run_ktl(how == "env" ? kBench : kBench + how);
    unsetenv("KTL_KERNELS");
    ASSERT_EQ(r.code, 0) << r.out;
    const auto runs = json_lines(r.out);
    ASSERT_EQ(runs.size(), 1u) << r.out;
    const auto& j = runs[0];
    SCOPED_TRACE(j.dump());
    EXPECT_EQ(j["kernels"]["ceiling"], "avx2");
    EXPECT_EQ(j["kernels"]["simd"], "avx2");
    EXPECT_EQ(j["kernels"]["aten_cpu_capability"], "avx2");
    EXPECT_EQ(j["kernels"]["dnnl_max_cpu_isa"], "AVX2");
    EXPECT_EQ(j["int8_kernels"], "avx2");
    EXPECT_EQ(j["cpu_features"]["avx512f"], false);
    EXPECT_EQ(j["cpu_features"]["avx512_vnni"], false);
    if (!j["blas_core"].get<std::string>().empty()) {  // OpenBLAS: no AVX-512 kernels either
      const std::string core = j["blas_core"];
      EXPECT_TRUE(core != "SkylakeX" && core != "Cooperlake" && core != "SapphireRapids") << core;
    }
  }
  const CliRun r = run_ktl(kBench);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(json_lines(r.out).at(0)["kernels"]["ceiling"], "auto");
}

TEST(KernelsFlag, ABadValueIsAUsageError) {
  CliRun r = run_ktl(kBench + "--kernels avx1024");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--kernels must be auto, avx512 or avx2"), std::string::npos) << r.out;
  setenv("KTL_KERNELS", "sse", 1);
  r = run_ktl(kBench);
  unsetenv("KTL_KERNELS");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("KTL_KERNELS=sse"), std::string::npos) << r.out;
}

TEST(KernelsFlag, GreedyTokensUnderAvx2EqualTheNativeKernels) {
  if (!ktl::detect_native_cpu_features().avx2) GTEST_SKIP() << "no AVX2 here";
  ktl::testing::TempDir d;
  const auto tok = ktl::testing::make_tiny_tokenizer(d / "tok");
  ktl::testing::make_tiny_checkpoint(d / "ck", tok, 5);
  for (const char* dtype : {"int8", "bf16", "fp32"}) {
    const std::string gen = "generate --model " + d / "ck" +
                            " --prompt '나는 학교에서 친구를' --max-tokens 12 --temperature 0 "
                            "--ignore-eos --json --threads 1 --kv-cache-mb 8 --dtype " +
                            dtype;
    const CliRun native = run_ktl(gen), avx2 = run_ktl(gen + " --kernels avx2");
    ASSERT_EQ(native.code, 0) << native.out;
    ASSERT_EQ(avx2.code, 0) << avx2.out;
    const auto ids = json_lines(native.out).back().at("ids").get<std::vector<int>>();
    EXPECT_EQ(ids.size(), 12u);
    EXPECT_EQ(json_lines(avx2.out).back().at("ids").get<std::vector<int>>(), ids) << dtype;
  }
}

}  // namespace
