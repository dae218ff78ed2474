// `ktl doctor` on a data directory laid out as `ktl serve` leaves it (ktl.db, runs/<name>/
// checkpoint-N with latest/best links, data/ shards and tokenizer): healthy -> exit 0; a byte
// flipped in a checkpoint, a shard or the job database, or a broken link -> exit 1 naming the
// file. And `ktl generate --no-verify` loads a checkpoint whose weights changed.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "core/data/token_shard.h"
#include "jobs/job_store.h"
#include "tests/support/tiny_checkpoint.h"

#include "tests/support/cli_process.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using ktl::cli_process::CliRun;

CliRun ktl(const std::string& args) {
  return ktl::cli_process::run_ktl(args);
}

// XORs one byte at `at` (from the end when negative).
void flip(const fs::path& file, long long at, char mask = 0x20) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  const auto size = static_cast<long long>(fs::file_size(file));
  const std::streamoff off = at < 0 ? size + at : at;
  f.seekg(off);
  const char c = static_cast<char>(f.get());
  f.seekp(off);
  f.put(static_cast<char>(c ^ mask));
}

long long find_in(const fs::path& file, const std::string& needle) {
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const size_t at = bytes.find(needle);
  return at == std::string::npos ? -1 : static_cast<long long>(at);
}

class DoctorTest : public ::testing::Test {
 protected:
  // One healthy data directory for the suite; each test damages a copy.
  static void SetUpTestSuite() {
    base_ = new ktl::testing::TempDir("ktl-doctor");
    const fs::path d = base_->path() + "/data-dir";
    const std::string tok = ktl::testing::make_tiny_tokenizer(d / "data" / "default");
    const fs::path run = d / "runs" / "tiny";
    ktl::testing::make_tiny_checkpoint((run / "checkpoint-2").string(), tok, 1);
    ktl::testing::make_tiny_checkpoint((run / "checkpoint-4").string(), tok, 2);
    fs::create_directory_symlink("checkpoint-4", run / "latest");
    fs::create_directory_symlink("checkpoint-2", run / "best");
    ktl::TokenShardWriter w(d / "data" / "default" / "train.bin", 512);
    for (int doc = 0; doc < 50; ++doc) w.add_document({10, 20, 30 + doc, 40}, 8);
    w.finish();
    ktl::jobs::JobStore store((d / "ktl.db").string());
    ktl::jobs::NewJob j;
    j.name = "marker-doctor-0123456789";
    j.spec_json = "{}";
    store.create_job(j);
  }
  static void TearDownTestSuite() { delete base_; }

  void SetUp() override {
    dir_ = fs::path(tmp_.path()) / "data-dir";
    fs::copy(base_->path() + "/data-dir", dir_,
             fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  }

  json doctor_json(int* code) {
    const CliRun r = ktl("doctor " + dir_.string() + " --json");
    *code = r.code;
    const size_t at = r.out.rfind("\n{");
    return json::parse(r.out.substr(at == std::string::npos ? r.out.find('{') : at + 1));
  }

  static ktl::testing::TempDir* base_;
  ktl::testing::TempDir tmp_{"ktl-doctor-run"};
  fs::path dir_;
};
ktl::testing::TempDir* DoctorTest::base_ = nullptr;

TEST_F(DoctorTest, AHealthyDirectoryExitsZero) {
  const CliRun r = ktl("doctor " + dir_.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("healthy"), std::string::npos) << r.out;
  int code = -1;
  const json j = doctor_json(&code);
  EXPECT_EQ(code, 0);
  EXPECT_TRUE(j["ok"].get<bool>()) << j.dump(2);
  EXPECT_TRUE(j["problems"].empty()) << j.dump(2);
  EXPECT_EQ(j["checked"]["databases"], 1);
  EXPECT_EQ(j["checked"]["checkpoints"], 2);
  EXPECT_EQ(j["checked"]["shards"], 1);
  EXPECT_GE(j["checked"]["tokenizers"], 1);
}

TEST_F(DoctorTest, AFlippedByteInACheckpointIsNamed) {
  const fs::path w = dir_ / "runs" / "tiny" / "checkpoint-4" / "model.safetensors";
  flip(w, -3);
  int code = -1;
  const json j = doctor_json(&code);
  EXPECT_EQ(code, 1) << j.dump(2);
  ASSERT_EQ(j["problems"].size(), 1u) << j.dump(2);
  EXPECT_EQ(j["problems"][0]["path"], w.string());
  EXPECT_NE(j["problems"][0]["problem"].get<std::string>().find("checksum mismatch"),
            std::string::npos);
  const CliRun text = ktl("doctor " + dir_.string());
  EXPECT_EQ(text.code, 1);
  EXPECT_NE(text.out.find("error: " + w.string() + ": checksum mismatch"), std::string::npos)
      << text.out;
}

TEST_F(DoctorTest, AFlippedByteInAShardIsNamed) {
  const fs::path shard = dir_ / "data" / "default" / "train.bin";
  // Token 7's low bit: another id inside the vocabulary, so only the checksum can tell.
  flip(shard, ktl::TokenShardHeader::kSize + 2 * 7, '\x01');
  int code = -1;
  const json j = doctor_json(&code);
  EXPECT_EQ(code, 1) << j.dump(2);
  ASSERT_EQ(j["problems"].size(), 1u) << j.dump(2);
  EXPECT_EQ(j["problems"][0]["path"], shard.string());
  EXPECT_NE(j["problems"][0]["problem"].get<std::string>().find("checksum mismatch"),
            std::string::npos)
      << j.dump(2);
}

TEST_F(DoctorTest, AFlippedByteInTheJobDatabaseIsNamed) {
  const fs::path db = dir_ / "ktl.db";
  const long long at = find_in(db, "marker-doctor-0123456789");
  ASSERT_GE(at, 0);
  flip(db, at + 3, 0x01);
  int code = -1;
  const json j = doctor_json(&code);
  EXPECT_EQ(code, 1) << j.dump(2);
  ASSERT_EQ(j["problems"].size(), 1u) << j.dump(2);
  EXPECT_EQ(j["problems"][0]["path"], db.string());
  EXPECT_NE(j["problems"][0]["problem"].get<std::string>().find("page checksum mismatch"),
            std::string::npos)
      << j.dump(2);
}

TEST_F(DoctorTest, ABrokenLatestLinkIsReported) {
  fs::remove_all(dir_ / "runs" / "tiny" / "checkpoint-4");
  int code = -1;
  const json j = doctor_json(&code);
  EXPECT_EQ(code, 1) << j.dump(2);
  ASSERT_EQ(j["problems"].size(), 1u) << j.dump(2);
  EXPECT_EQ(j["problems"][0]["path"], (dir_ / "runs" / "tiny" / "latest").string());
  EXPECT_NE(j["problems"][0]["problem"].get<std::string>().find("broken link"), std::string::npos);
}

// A leftover of a save killed half-way is reported, not counted as damage.
TEST_F(DoctorTest, AStaleTemporaryDirectoryIsAWarning) {
  fs::create_directories(dir_ / "runs" / "tiny" / "checkpoint-6.tmp-999999999");
  int code = -1;
  const json j = doctor_json(&code);
  EXPECT_EQ(code, 0) << j.dump(2);
  ASSERT_EQ(j["warnings"].size(), 1u) << j.dump(2);
  EXPECT_NE(j["warnings"][0]["problem"].get<std::string>().find("stale leftover"),
            std::string::npos);
}

TEST_F(DoctorTest, GenerateNoVerifySkipsTheChecksum) {
  const fs::path ck = dir_ / "runs" / "tiny" / "checkpoint-4";
  flip(ck / "model.safetensors", -3);  // inside the last float: still loads
  const std::string gen = "generate --model " + ck.string() +
                          " --prompt 안녕 --max-tokens 2 --temperature 0 --threads 1";
  const CliRun verified = ktl(gen);
  EXPECT_NE(verified.code, 0) << verified.out;
  EXPECT_NE(verified.out.find((ck / "model.safetensors").string() + ": checksum mismatch"),
            std::string::npos)
      << verified.out;
  const CliRun skipped = ktl(gen + " --no-verify");
  EXPECT_EQ(skipped.code, 0) << skipped.out;
  EXPECT_NE(ktl("generate --help").out.find("--no-verify"), std::string::npos);
}

}  // namespace
