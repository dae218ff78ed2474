// meta.json: the step, metrics and checksum of a checkpoint; bad values are runtime_errors.
#include "core/model/checkpoint_meta.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/tiny_checkpoint.h"

namespace ktl {
namespace {

CheckpointMeta read_meta(const testing::TempDir& d, const std::string& json) {
  std::ofstream(d / "meta.json") << json;
  return read_checkpoint_meta(d.path());
}

TEST(CheckpointMeta, ReadsStepMetricsAndChecksum) {
  testing::TempDir d;
  auto m = read_meta(d, R"({"step":1200,"metrics":{"val/loss":3.25},"extra":{"run":"tiny"},)"
                        R"("weights_sha256":"ab","format_version":1})");
  EXPECT_EQ(m.step, 1200);
  EXPECT_DOUBLE_EQ(m.metrics.at("val/loss"), 3.25);
  EXPECT_EQ(m.extra.at("run"), "tiny");
  EXPECT_EQ(m.weights_sha256, "ab");
}

// Found by the checkpoint_config fuzz target: "step": 8.9e25 reached get<int64_t>(), a
// float-to-integer conversion out of range (UBSan); huge unsigned steps wrapped negative.
TEST(CheckpointMeta, StepMustBeANonNegativeInt64) {
  for (const char* step :
       {"88888888888888888888881200", "1.5", "18446744073709551615", "-1", "\"7\"", "null"}) {
    testing::TempDir d;
    try {
      read_meta(d, std::string(R"({"step":)") + step + "}");
      FAIL() << "accepted step " << step;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("invalid checkpoint metadata"), std::string::npos)
          << e.what();
    }
  }
  testing::TempDir d;
  EXPECT_EQ(read_meta(d, R"({"step":9223372036854775807})").step, INT64_MAX);
}

TEST(CheckpointMeta, MissingFileIsIncomplete) {
  testing::TempDir d;
  EXPECT_THROW(read_checkpoint_meta(d.path()), std::runtime_error);
}

}  // namespace
}  // namespace ktl
