// Small UTF-8 helpers for the data pipeline. All functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ktl::utf8 {

// Decodes the code point at s[i] and advances i. Returns -1 (and advances one byte) on an
// invalid or truncated sequence, overlong form or surrogate.
int32_t next(std::string_view s, size_t& i);

void append(std::string& out, int32_t cp);

// Offset of the first invalid byte, or npos when `s` is valid UTF-8.
size_t find_invalid(std::string_view s);
inline bool valid(std::string_view s) {
  return find_invalid(s) == std::string_view::npos;
}

// Number of code points (for valid UTF-8; stray continuation bytes are not counted).
size_t count_chars(std::string_view s);

// Precomposed Hangul syllable (가-힣).
inline bool is_hangul_syllable(int32_t c) {
  return c >= 0xAC00 && c <= 0xD7A3;
}
// Any Hangul: syllables, conjoining jamo, compatibility jamo (ㅋ, ㅠ), extended jamo.
inline bool is_hangul(int32_t c) {
  return is_hangul_syllable(c) || (c >= 0x1100 && c <= 0x11FF) || (c >= 0x3130 && c <= 0x318F) ||
         (c >= 0xA960 && c <= 0xA97F) || (c >= 0xD7B0 && c <= 0xD7FF);
}

// Stable 64-bit FNV-1a (same value on every platform and run; std::hash is not).
uint64_t fnv1a64(std::string_view s, uint64_t seed = 0xcbf29ce484222325ULL);
// SplitMix64 finaliser: a good cheap mixer for hash values.
uint64_t mix64(uint64_t x);

}  // namespace ktl::utf8
