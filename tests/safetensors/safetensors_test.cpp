#include "core/safetensors/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/base/file_util.h"

namespace ktl {
namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ktl_st_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a raw file: u64 length, header text, data bytes.
  std::string raw(const std::string& header, const std::string& data, int64_t len_override = -1) {
    const std::string path = (dir_ / "raw.safetensors").string();
    uint64_t n = len_override >= 0 ? uint64_t(len_override) : header.size();
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = char(n >> (8 * i));
    write_file_atomic(path, bytes + header + data);
    return path;
  }

  // Expects open() to throw with `needle` in the message.
  void expect_reject(const std::string& path, const std::string& needle) {
    try {
      SafetensorsFile::open(path);
      FAIL() << "accepted a bad file, expected: " << needle;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "message names the path";
    }
  }

  fs::path dir_;
};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

TEST_F(SafetensorsTest, RoundTripIsBitIdenticalForEveryDtype) {
  struct Spec {
    std::string name;
    StDtype dtype;
    std::vector<int64_t> shape;
  };
  // Odd sizes on purpose: alignment must come from ordering, not from padding.
  std::vector<Spec> specs = {{"a.i8", StDtype::I8, {3, 5}},      {"b.f16", StDtype::F16, {7}},
                             {"c.f32", StDtype::F32, {2, 3, 3}}, {"d.bf16", StDtype::BF16, {5, 1}},
                             {"e.i64", StDtype::I64, {3}},       {"f.u8", StDtype::U8, {1}},
                             {"g.i32", StDtype::I32, {4, 2}},    {"h.empty", StDtype::F32, {0, 4}}};
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<StTensorView> views;
  for (size_t i = 0; i < specs.size(); ++i) {
    size_t n = st_dtype_size(specs[i].dtype);
    for (auto d : specs[i].shape) n *= size_t(d);
    bufs.push_back(random_bytes(n, uint32_t(i + 1)));
  }
  for (size_t i = 0; i < specs.size(); ++i)
    views.push_back(
        {specs[i].name, specs[i].dtype, specs[i].shape, bufs[i].data(), bufs[i].size()});
  const std::string path = (dir_ / "m.safetensors").string();
  write_safetensors(path, views, {{"format", "pt"}, {"step", "42"}});

  auto f = SafetensorsFile::open(path);
  ASSERT_EQ(f.tensors().size(), specs.size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("step"), "42");
  for (size_t i = 0; i < specs.size(); ++i) {
    const StTensorInfo* t = f.find(specs[i].name);
    ASSERT_NE(t, nullptr) << specs[i].name;
    EXPECT_EQ(t->dtype, specs[i].dtype);
    EXPECT_EQ(t->shape, specs[i].shape);
    ASSERT_EQ(t->nbytes, bufs[i].size());
    if (t->nbytes) {
      EXPECT_EQ(std::memcmp(f.data(*t), bufs[i].data(), t->nbytes), 0) << specs[i].name;
      // Each tensor starts at a multiple of its element size in memory.
      EXPECT_EQ(reinterpret_cast<uintptr_t>(f.data(*t)) % st_dtype_size(t->dtype), 0u);
    }
  }
  EXPECT_EQ(f.find("missing"), nullptr);

  // Header length is a multiple of 8 and the file has no leftovers next to it.
  std::string bytes = read_file(path);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | uint8_t(bytes[i]);
  EXPECT_EQ(hlen % 8, 0u);
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
}

TEST_F(SafetensorsTest, MoveKeepsMappingValid) {
  std::vector<float> w = {1.5f, -2.f, 3.25f};
  const std::string path = (dir_ / "m.safetensors").string();
  write_safetensors(path, {{"w", StDtype::F32, {3}, w.data(), w.size() * 4}});
  auto f = SafetensorsFile::open(path);
  SafetensorsFile g = std::move(f);
  const float* p = static_cast<const float*>(g.data(*g.find("w")));
  EXPECT_EQ(p[2], 3.25f);
}

TEST_F(SafetensorsTest, RejectsTruncatedFile) {
  std::vector<float> w(64, 1.f);
  const std::string path = (dir_ / "m.safetensors").string();
  write_safetensors(path, {{"w", StDtype::F32, {8, 8}, w.data(), w.size() * 4}});
  std::string bytes = read_file(path);
  write_file_atomic(path, bytes.substr(0, bytes.size() - 5));
  expect_reject(path, "truncated");
  write_file_atomic(path, bytes.substr(0, 5));
  expect_reject(path, "too small");
  write_file_atomic(path, bytes.substr(0, 20));  // cut inside the header
  expect_reject(path, "exceeds the file size");
}

TEST_F(SafetensorsTest, RejectsBadHeaderLength) {
  expect_reject(raw(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x", 1000),
                "exceeds the file size");
  expect_reject(raw("{}", "", int64_t(1) << 40), "implausible");
}

TEST_F(SafetensorsTest, RejectsBadJson) {
  expect_reject(raw(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]})", "x"),
                "not valid JSON");
  expect_reject(raw("[1, 2]  ", ""), "not a JSON object");
  expect_reject(raw(R"({"w":{"dtype":"U8","shape":[1]}})", "x"), "data_offsets");
  expect_reject(raw(R"({"w":{"dtype":"U8","shape":"1","data_offsets":[0,1]}})", "x"), "shape");
  expect_reject(raw(R"({"__metadata__":{"a":1}})", ""), "not a string");
}

TEST_F(SafetensorsTest, RejectsOverlappingOrOutOfRangeOffsets) {
  expect_reject(raw(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                    R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                    "123456"),
                "overlaps");
  expect_reject(raw(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "12"),
                "past the end");
  expect_reject(raw(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", "1234"), "gap");
  expect_reject(raw(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "1234"),
                "trailing");
  expect_reject(raw(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", "1234"),
                "end < begin");
}

TEST_F(SafetensorsTest, RejectsUnknownDtypeAndSizeMismatch) {
  expect_reject(raw(R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", "12345678"),
                "unknown dtype 'F64'");
  expect_reject(raw(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678"),
                "need 12");
  EXPECT_THROW(st_dtype_from_name("Q4"), std::runtime_error);
}

TEST_F(SafetensorsTest, WriterRejectsBadInputAndKeepsOldFile) {
  std::vector<float> w = {1.f, 2.f};
  const std::string path = (dir_ / "m.safetensors").string();
  write_safetensors(path, {{"w", StDtype::F32, {2}, w.data(), 8}});
  const std::string before = read_file(path);
  EXPECT_THROW(write_safetensors(path, {{"w", StDtype::F32, {3}, w.data(), 8}}),
               std::runtime_error);
  EXPECT_THROW(write_safetensors(path, {{"w", StDtype::F32, {2}, w.data(), 8},
                                        {"w", StDtype::F32, {2}, w.data(), 8}}),
               std::runtime_error);
  EXPECT_EQ(read_file(path), before);
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u) << "no temporary file left behind";
  EXPECT_THROW(write_safetensors((dir_ / "no/such/dir/m.safetensors").string(), {}),
               std::runtime_error);
}

}  // namespace
}  // namespace ktl
