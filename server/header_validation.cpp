#include "server/header_validation.h"

#include <limits>

namespace ktl::server {
namespace {

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

}  // namespace

std::string header_line_problem(std::string_view line) {
  if (!line.empty() && (line[0] == ' ' || line[0] == '\t'))
    return "folded header lines are not accepted";
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return "a header line has no colon";
  if (colon == 0) return "a header has an empty name";
  for (size_t i = 0; i < colon; ++i)
    if (!is_tchar(static_cast<unsigned char>(line[i])))
      return "a header name has an invalid character";
  for (size_t i = colon + 1; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return "a header value has a control character";
  }
  return "";
}

std::optional<int64_t> parse_decimal_int64(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return static_cast<int64_t>(v);
}

}  // namespace ktl::server
