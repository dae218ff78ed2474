// Integer ranges as GBNF digit rules (llama.cpp's json-schema-to-grammar approach): [15, 342]
// becomes "1" [5-9] | [2-9] [0-9] | "1" ... per digit count, so only integers in the range
// (no leading zeros, no "-0") can be generated.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ktl::grammar {

constexpr int64_t kMaxIntBound = 1000000000000000;  // 1e15: 16 digits, exact in a double

// A GBNF expression (no trailing space) for the integers in [lo, hi]; a missing bound is open
// (up to 16 digits). Both given with lo > hi: std::nullopt (the range is empty).
std::optional<std::string> int_range_gbnf(std::optional<int64_t> lo, std::optional<int64_t> hi);

}  // namespace ktl::grammar
