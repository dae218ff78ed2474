// meta.json: the step, metrics and checksum of a checkpoint; bad values are runtime_errors.
#include "core/model/checkpoint_meta.h"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

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


TEST(CheckpointMeta, ReadsTheFileManifest) {
  testing::TempDir d;
  const std::string sha(64, 'a');
  auto m = read_meta(d, R"({"step":1,"files":{"config.json":")" + sha + R"(","sub/x.bin":")" +
                            sha + R"("}})");
  ASSERT_EQ(m.file_sha256.size(), 2u);
  EXPECT_EQ(m.file_sha256.at("sub/x.bin"), sha);
}

// A manifest may only name files inside the checkpoint, with a real sha256.
TEST(CheckpointMeta, RefusesABadManifest) {
  const std::string sha(64, 'b');
  const std::vector<std::string> entries = {"\"../x\":\"" + sha + "\"",
                                            "\"/etc/passwd\":\"" + sha + "\"",
                                            "\"meta.json\":\"" + sha + "\"", "\"a\":\"xyz\"",
                                            "\"a\":1"};
  for (const std::string& entry : entries) {
    testing::TempDir d;
    EXPECT_THROW(read_meta(d, R"({"step":1,"files":{)" + entry + "}}"), std::runtime_error)
        << entry;
  }
}

TEST(CheckpointMeta, VerifyReportsAMissingMetaJson) {
  testing::TempDir d;
  const auto problems = verify_checkpoint_files(d.path());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("meta.json missing"), std::string::npos) << problems[0];
}

}  // namespace
}  // namespace ktl
