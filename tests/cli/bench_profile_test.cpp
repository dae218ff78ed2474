// `ktl bench --profile`: each stream count's JSON carries where a decode step went, its parts
// adding up to the step; without --profile there is no profile.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/cli_process.h"

namespace {

using ktl::cli_process::CliRun;
using ktl::cli_process::json_lines;

CliRun ktl(const std::string& args) {
  return ktl::cli_process::run_ktl(args);
}

const std::string kBench = "bench --random-init --model-config " KTL_SOURCE_DIR
                           "/configs/model_tiny.yaml --streams 1,4 --prompt-tokens 8 "
                           "--gen-tokens 6 --threads 1 --dtype int8 ";

TEST(BenchProfile, JsonSplitsTheDecodeStepIntoParts) {
  const CliRun r = ktl(kBench + "--profile --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto runs = json_lines(r.out);
  ASSERT_EQ(runs.size(), 2u) << r.out;
  for (const auto& j : runs) {
    SCOPED_TRACE(j.dump());
    const auto& p = j.at("profile");
    // The first token comes from a prefill step; later streams may join a step later.
    EXPECT_GE(p["decode_steps"].get<int>(), 5);
    EXPECT_GE(p["rows_per_step"].get<double>(), 1.0);
    EXPECT_LE(p["rows_per_step"].get<double>(), j["streams"].get<double>());
    double ms = 0, pct = 0;
    for (const char* part :
         {"matmuls", "quantization", "attention", "sampling", "scheduling", "other"}) {
      EXPECT_GE(p["parts"][part]["ms"].get<double>(), 0.0) << part;
      ms += p["parts"][part]["ms"].get<double>();
      pct += p["parts"][part]["pct"].get<double>();
    }
    EXPECT_NEAR(ms, p["step_ms"].get<double>(), 1e-6);
    EXPECT_NEAR(pct, 100.0, 1e-6);
    EXPECT_GT(p["parts"]["matmuls"]["ms"].get<double>(), 0.0);
    EXPECT_GT(p["parts"]["quantization"]["ms"].get<double>(), 0.0);  // int8 activations
  }
}

TEST(BenchProfile, TableOnlyWhenAsked) {
  CliRun r = ktl(kBench + "--profile");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("decode step profile"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("matmuls"), std::string::npos) << r.out;
  r = ktl(kBench + "--json");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const auto& j : json_lines(r.out)) EXPECT_FALSE(j.contains("profile")) << j.dump();
}

}  // namespace
