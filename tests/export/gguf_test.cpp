// GGUF format pieces: fp16, q8_0, writer/reader round trip and rejection of corrupt files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/base/file_util.h"
#include "core/export/gguf_reader.h"
#include "core/export/gguf_writer.h"

namespace ktl {
namespace {

TEST(GgufFormat, Fp16ConversionRoundsToNearestEven) {
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(-2.0f), 0xc000);
  EXPECT_EQ(fp32_to_fp16(0.1f), 0x2e66);
  EXPECT_EQ(fp32_to_fp16(65504.f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.f), 0x7c00);  // halfway to the next: rounds to even = inf
  EXPECT_EQ(fp32_to_fp16(1e-9f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.f, -24)), 0x0001);            // smallest subnormal
  EXPECT_EQ(fp32_to_fp16(1.f + std::ldexp(1.f, -11)), 0x3c00);      // tie -> even
  EXPECT_EQ(fp32_to_fp16(1.f + 3 * std::ldexp(1.f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(NAN))));
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN payloads
    ASSERT_EQ(fp32_to_fp16(fp16_to_fp32(uint16_t(h))), h) << h;
  }
  EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
}

TEST(GgufFormat, Q8_0MatchesReferenceQuantizer) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::vector<float> x(32 * 20);
  for (auto& v : x) v = nd(rng);
  std::fill(x.begin() + 64, x.begin() + 96, 0.f);  // an all-zero block
  std::vector<uint8_t> q(x.size() / 32 * 34);
  quantize_q8_0(x.data(), x.size(), q.data());
  std::vector<float> y(x.size());
  dequantize_q8_0(q.data(), x.size(), y.data());
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = fp16_to_fp32(uint16_t(q[b * 34] | (q[b * 34 + 1] << 8)));
    EXPECT_EQ(d, fp16_to_fp32(fp32_to_fp16(amax / 127.f)));
    for (size_t j = 0; j < 32; ++j) {
      const int8_t qs = static_cast<int8_t>(q[b * 34 + 2 + j]);
      const float id = amax > 0 ? 127.f / amax : 0.f;
      EXPECT_EQ(qs, static_cast<int8_t>(
                        std::roundf(x[b * 32 + j] * (amax > 0 ? 1.f / (amax / 127.f) : 0.f))));
      EXPECT_NEAR(y[b * 32 + j], x[b * 32 + j], amax / 127.f * 0.51f + 1e-6f) << id;
    }
  }
  for (size_t j = 64; j < 96; ++j) EXPECT_EQ(y[j], 0.f);
  EXPECT_THROW(quantize_q8_0(x.data(), 31, q.data()), std::runtime_error);
}

class GgufFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ktl_gguf_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = (dir_ / "t.gguf").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void expect_reject(const std::string& bytes, const std::string& needle) {
    write_file_atomic(path_, bytes);
    try {
      GgufFile::open(path_);
      FAIL() << "accepted a bad file, expected: " << needle;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(GgufFileTest, RoundTripsMetadataAndTensors) {
  GgufWriter w(64);
  w.set("general.architecture", GgufValue::str("llama"));
  w.set("a.u32", GgufValue::u32(4000000000u));
  w.set("a.i32", GgufValue::i32(-7));
  w.set("a.u64", GgufValue::u64(1ull << 40));
  w.set("a.f32", GgufValue::f32(0.5f));
  w.set("a.bool", GgufValue::boolean(true));
  w.set("a.str", GgufValue::str("안녕하세요 ▁세계"));
  w.set("a.strs", GgufValue::strings({"<s>", "▁가", ""}));
  w.set("a.f32s", GgufValue::f32s({-1.5f, 2.f}));
  w.set("a.nested",
        GgufValue::array(GgufType::kArray, {GgufValue::i32s({1, 2}), GgufValue::i32s({})}));
  w.set("a.u32", GgufValue::u32(5));  // replacing keeps the position
  std::vector<float> t1(3 * 5), t2(64 * 2);
  for (size_t i = 0; i < t1.size(); ++i) t1[i] = float(i) * 0.25f;
  for (size_t i = 0; i < t2.size(); ++i) t2[i] = std::sin(float(i));
  w.add_tensor("one", GgmlType::kF32, {5, 3}, [&] {
    return std::string(reinterpret_cast<const char*>(t1.data()), t1.size() * 4);
  });
  w.add_tensor("two", GgmlType::kQ8_0, {64, 2}, [&] {
    std::string s(4 * 34, '\0');
    quantize_q8_0(t2.data(), t2.size(), reinterpret_cast<uint8_t*>(&s[0]));
    return s;
  });
  w.add_tensor("three", GgmlType::kF16, {7}, [] {
    std::string s;
    for (int i = 0; i < 7; ++i) {
      uint16_t h = fp32_to_fp16(float(i));
      s += char(h & 0xff);
      s += char(h >> 8);
    }
    return s;
  });
  EXPECT_THROW(w.add_tensor("bad", GgmlType::kQ8_0, {33}, [] { return std::string(); }),
               std::invalid_argument);
  EXPECT_THROW(w.add_tensor("one", GgmlType::kF32, {1}, [] { return std::string(); }),
               std::invalid_argument);
  const uint64_t written = w.write(path_);

  GgufFile f = GgufFile::open(path_);
  EXPECT_EQ(f.file_size(), written);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_u32("general.alignment"), 64u);
  EXPECT_EQ(f.metadata()[2].first, "a.u32");
  EXPECT_EQ(f.get_u32("a.u32"), 5u);
  EXPECT_EQ(f.find("a.i32")->i, -7);
  EXPECT_EQ(f.find("a.u64")->type, GgufType::kUint64);
  EXPECT_EQ(f.find("a.u64")->u, 1ull << 40);
  EXPECT_EQ(f.get_f32("a.f32"), 0.5f);
  EXPECT_TRUE(f.get_bool("a.bool"));
  EXPECT_EQ(f.get_string("a.str"), "안녕하세요 ▁세계");
  const GgufValue& strs = f.get_array("a.strs", GgufType::kString);
  ASSERT_EQ(strs.arr.size(), 3u);
  EXPECT_EQ(strs.arr[1].s, "▁가");
  EXPECT_EQ(strs.arr[2].s, "");
  EXPECT_EQ(f.get_array("a.f32s", GgufType::kFloat32).arr[0].f, -1.5);
  const GgufValue& nested = f.get_array("a.nested", GgufType::kArray);
  ASSERT_EQ(nested.arr.size(), 2u);
  EXPECT_EQ(nested.arr[0].arr[1].i, 2);
  EXPECT_THROW(f.get_u32("a.i32"), std::runtime_error);
  EXPECT_THROW(f.get_u32("missing"), std::runtime_error);
  EXPECT_THROW(f.get_array("a.strs", GgufType::kInt32), std::runtime_error);

  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % 64, 0u) << t.name;
  const GgufTensorInfo* one = f.find_tensor("one");
  ASSERT_NE(one, nullptr);
  EXPECT_EQ(one->ne, (std::vector<uint64_t>{5, 3}));
  EXPECT_EQ(f.to_f32(*one), t1);
  const GgufTensorInfo* two = f.find_tensor("two");
  EXPECT_EQ(two->nbytes, 4u * 34);
  EXPECT_EQ(two->offset, 64u);  // 60 bytes of "one" padded to 64
  auto y = f.to_f32(*two);
  for (size_t i = 0; i < t2.size(); ++i) EXPECT_NEAR(y[i], t2[i], 1.f / 127);
  EXPECT_EQ(f.to_f32(*f.find_tensor("three"))[6], 6.f);
}

TEST_F(GgufFileTest, DefaultAlignmentIsImplicit) {
  GgufWriter w;
  w.set("k", GgufValue::u32(1));
  w.add_tensor("t", GgmlType::kF32, {3}, [] { return std::string(12, '\0'); });
  w.write(path_);
  GgufFile f = GgufFile::open(path_);
  EXPECT_EQ(f.find("general.alignment"), nullptr);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.file_size(), f.data_offset() + 32);  // the last tensor is padded too
}

// Found by tests/fuzz (gguf): an empty f32 tensor's to_f32() passed a null pointer to memcpy.
TEST_F(GgufFileTest, EmptyTensorReadsAsNoFloats) {
  GgufWriter w;
  w.add_tensor("empty", GgmlType::kF32, {0, 4}, [] { return std::string(); });
  w.write(path_);
  GgufFile f = GgufFile::open(path_);
  const GgufTensorInfo* t = f.find_tensor("empty");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->nbytes, 0u);
  EXPECT_TRUE(f.to_f32(*t).empty());
}

TEST_F(GgufFileTest, RejectsCorruptFiles) {
  GgufWriter w;
  w.set("general.name", GgufValue::str("x"));
  w.set("tokens", GgufValue::strings({"a", "b"}));
  w.add_tensor("t", GgmlType::kF32, {8}, [] { return std::string(32, '\1'); });
  w.write(path_);
  const std::string good = read_file(path_);
  ASSERT_NO_THROW(GgufFile::open(path_));

  std::string bad = good;
  bad[0] = 'X';
  expect_reject(bad, "bad magic");
  bad = good;
  bad[4] = 9;
  expect_reject(bad, "unsupported GGUF version 9");
  expect_reject(good.substr(0, 40), "truncated");
  expect_reject(good.substr(0, good.size() - 40), "past the end");
  expect_reject(good.substr(0, 10), "too small");
  bad = good;
  bad[24 + 8 + 12] = 99;  // first value type (after count fields, key length and "general.name")
  expect_reject(bad, "unknown metadata value type 99");
  expect_reject("", "too small");
}

// Found by tests/fuzz (gguf): dims whose byte size wrapped around 2^64 passed the size checks,
// and to_f32() then tried to allocate 2^62 floats.
TEST_F(GgufFileTest, RejectsTensorSizesThatOverflow) {
  EXPECT_THROW(ggml_nbytes(GgmlType::kF32, {uint64_t(1) << 62}), std::runtime_error);
  EXPECT_THROW(ggml_nbytes(GgmlType::kF16, {uint64_t(1) << 32, uint64_t(1) << 32}),
               std::runtime_error);
  GgufWriter w;
  w.add_tensor("t", GgmlType::kF32, {8}, [] { return std::string(32, '\1'); });
  w.write(path_);
  const std::string good = read_file(path_);
  auto with_dim0 = [&](uint64_t ne0) {
    std::string bad = good;
    const size_t at = 24 + 8 + 1 + 4;  // header, name length, "t", n_dims
    for (int i = 0; i < 8; ++i) bad[at + i] = char(ne0 >> (8 * i));
    return bad;
  };
  expect_reject(with_dim0(uint64_t(1) << 62), "overflows");           // 2^64 bytes: wrapped to 0
  expect_reject(with_dim0(uint64_t(1) << 61), "past the end");        // 2^63 bytes
  expect_reject(with_dim0((uint64_t(1) << 62) - 8), "past the end");  // padded size wraps
}

TEST_F(GgufFileTest, WriterFailureLeavesNoFile) {
  GgufWriter w;
  w.add_tensor("t", GgmlType::kF32, {8}, [] { return std::string(5, '\0'); });  // wrong size
  EXPECT_THROW(w.write(path_), std::runtime_error);
  EXPECT_TRUE(fs::is_empty(dir_));
  EXPECT_THROW(GgufWriter(48), std::invalid_argument);
}

}  // namespace
}  // namespace ktl
