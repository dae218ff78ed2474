// Strict header-line and number checks that cpp-httplib 0.11.4 does not make.
#include "server/header_validation.h"

#include <gtest/gtest.h>

namespace ktl::server {
namespace {

TEST(HeaderValidation, AcceptsWellFormedLines) {
  for (const char* line : {"Host: 127.0.0.1", "Content-Type:application/json",
                           "X-A_b.c~1: ", "Authorization: Bearer k\tx", "Accept: */*"})
    EXPECT_EQ(header_line_problem(line), "") << line;
}

TEST(HeaderValidation, RejectsWhatHttplibAccepts) {
  EXPECT_NE(header_line_problem("no colon here"), "");
  EXPECT_NE(header_line_problem("Bad Name: x"), "");
  EXPECT_NE(header_line_problem(": empty name"), "");
  EXPECT_NE(header_line_problem(std::string("X-Nul: a\0b", 10)), "");
  EXPECT_NE(header_line_problem(std::string("X-\0: a", 6)), "");
  EXPECT_NE(header_line_problem("X-Cr: a\rb"), "");
  EXPECT_NE(header_line_problem(" folded: continuation"), "");
  EXPECT_NE(header_line_problem("X-Del: a\x7f"), "");
  EXPECT_NE(header_line_problem("X(y): a"), "");
}

TEST(HeaderValidation, DecimalIntegersAreWholeStrings) {
  EXPECT_EQ(parse_decimal_int64("5"), 5);
  EXPECT_EQ(parse_decimal_int64("0"), 0);
  EXPECT_EQ(parse_decimal_int64("9223372036854775807"), INT64_MAX);
  for (const char* bad : {"", "5abc", "-1", "+1", " 5", "5 ", "0x10", "9223372036854775808",
                          "99999999999999999999", "1e3"})
    EXPECT_FALSE(parse_decimal_int64(bad).has_value()) << bad;
}

}  // namespace
}  // namespace ktl::server
