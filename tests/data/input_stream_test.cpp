#include "core/data/input_stream.h"

#include <gtest/gtest.h>

#include "tests/support/data_test_util.h"

namespace {

using ktl::InputStream;
using ktl::testing::TempDir;

std::vector<std::string> lines_of(InputStream& in) {
  std::vector<std::string> out;
  std::string l;
  while (in.getline(l)) out.push_back(l);
  return out;
}

TEST(InputStream, PlainWithCrlfAndNoFinalNewline) {
  TempDir d;
  ktl::testing::write_text(d.file("a.txt"), "첫째\r\n둘째\n셋째");
  InputStream in(d.file("a.txt"));
  EXPECT_EQ(in.codec(), InputStream::Codec::kPlain);
  EXPECT_EQ(lines_of(in), (std::vector<std::string>{"첫째", "둘째", "셋째"}));
  EXPECT_EQ(in.line_number(), 3);
}

TEST(InputStream, GzipDetectedByContent) {
  TempDir d;
  ktl::testing::write_gzip(d.file("data.bin"), "가\n나\n");
  InputStream in(d.file("data.bin"));
  EXPECT_EQ(in.codec(), InputStream::Codec::kGzip);
  EXPECT_EQ(lines_of(in), (std::vector<std::string>{"가", "나"}));
}

TEST(InputStream, MultiStreamBzip2) {
  TempDir d;
  ktl::testing::write_text(
      d.file("m.bz2"), ktl::testing::bzip2_bytes("하나\n둘\n") + ktl::testing::bzip2_bytes("셋\n"));
  InputStream in(d.file("m.bz2"));
  EXPECT_EQ(in.codec(), InputStream::Codec::kBzip2);
  EXPECT_EQ(lines_of(in), (std::vector<std::string>{"하나", "둘", "셋"}));
}

TEST(InputStream, TruncatedBzip2ThrowsWithFileAndLine) {
  TempDir d;
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "줄 번호 " + std::to_string(i) + " 입니다\n";
  std::string bz = ktl::testing::bzip2_bytes(text);
  ktl::testing::write_text(d.file("t.bz2"), bz.substr(0, bz.size() / 2));
  InputStream in(d.file("t.bz2"));
  std::string l;
  try {
    while (in.getline(l)) {
    }
    FAIL() << "no error for a truncated file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(d.file("t.bz2") + ":"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST(InputStream, TruncatedGzipThrows) {
  TempDir d;
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "문장 " + std::to_string(i * 7919) + "\n";
  ktl::testing::write_gzip(d.file("t.gz"), text);
  std::string gz = ktl::testing::read_text(d.file("t.gz"));
  ktl::testing::write_text(d.file("t.gz"), gz.substr(0, gz.size() / 2));
  InputStream in(d.file("t.gz"));
  std::string l;
  EXPECT_THROW(while (in.getline(l)){}, std::runtime_error);
}

TEST(InputStream, MissingFileThrows) {
  EXPECT_THROW(InputStream("/nonexistent/x.txt"), std::runtime_error);
}

}  // namespace
