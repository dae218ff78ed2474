// Strict checks on raw HTTP header lines and header values that cpp-httplib 0.11.4 accepts
// leniently (it skips a line without a colon, keeps a name with a space, and reads
// "Last-Event-ID: 5abc" as 5 when converted with stoll). Pure functions; no HTTP library.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ktl::server {

// Why one header line (without its CRLF) is malformed, or "" when it is a valid
// `token ":" OWS value OWS` line: the name is an RFC 9110 token, the value has no control
// byte but HTAB (so no NUL, CR or LF), and the line is not an obsolete folded continuation.
std::string header_line_problem(std::string_view line);

// A whole string of ASCII digits (no sign, no space, no suffix) that fits in int64_t: how
// Content-Length and Last-Event-ID are read.
std::optional<int64_t> parse_decimal_int64(std::string_view s);

}  // namespace ktl::server
