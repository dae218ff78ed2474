// Code points <-> UTF-8 bytes for the grammar compiler.
//
// utf8_sequences() turns a set of code-point ranges into byte-range sequences, the way regex
// engines compile Unicode classes to byte automata: [U+AC00-U+D7A3] becomes
// [EA-EC][B0-BF][80-BF] | ... Each sequence matches exactly the valid UTF-8 encodings of its
// code points, so a byte-level matcher accepts only valid UTF-8. Surrogates are never included.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ktl::grammar {

using CodeRange = std::pair<uint32_t, uint32_t>;  // inclusive [lo, hi]
using ByteRange = std::pair<uint8_t, uint8_t>;    // inclusive [lo, hi]

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

// Sorted, merged, surrogate-free copy of `ranges` (values above kMaxCodePoint dropped).
std::vector<CodeRange> normalize_ranges(std::vector<CodeRange> ranges);
// The complement of `ranges` within [0, kMaxCodePoint] minus surrogates.
std::vector<CodeRange> complement_ranges(const std::vector<CodeRange>& ranges);
// Byte-range sequences (1 to 4 long) matching exactly the UTF-8 encodings of `ranges`.
std::vector<std::vector<ByteRange>> utf8_sequences(const std::vector<CodeRange>& ranges);

void append_utf8(uint32_t cp, std::string* out);
// Decodes one code point at s[*i] and advances *i; false on invalid UTF-8 (i unchanged).
bool decode_utf8(std::string_view s, size_t* i, uint32_t* cp);

}  // namespace ktl::grammar
