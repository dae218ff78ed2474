#include "core/grammar/utf8_ranges.h"

#include <algorithm>

namespace ktl::grammar {

namespace {

constexpr uint32_t kSurrogateLo = 0xD800;
constexpr uint32_t kSurrogateHi = 0xDFFF;

int utf8_length(uint32_t cp) {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

int encode(uint32_t cp, uint8_t* b) {
  const int n = utf8_length(cp);
  if (n == 1) {
    b[0] = static_cast<uint8_t>(cp);
  } else if (n == 2) {
    b[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
    b[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  } else if (n == 3) {
    b[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
    b[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    b[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  } else {
    b[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
    b[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
    b[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    b[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  }
  return n;
}

}  // namespace

std::vector<CodeRange> normalize_ranges(std::vector<CodeRange> ranges) {
  std::vector<CodeRange> split;
  for (auto [lo, hi] : ranges) {
    if (lo > hi || lo > kMaxCodePoint) continue;
    hi = std::min(hi, kMaxCodePoint);
    if (hi < kSurrogateLo || lo > kSurrogateHi) {
      split.emplace_back(lo, hi);
      continue;
    }
    if (lo < kSurrogateLo) split.emplace_back(lo, kSurrogateLo - 1);
    if (hi > kSurrogateHi) split.emplace_back(kSurrogateHi + 1, hi);
  }
  std::sort(split.begin(), split.end());
  std::vector<CodeRange> out;
  for (const auto& r : split) {
    if (!out.empty() && r.first <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, r.second);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::vector<CodeRange> complement_ranges(const std::vector<CodeRange>& ranges) {
  std::vector<CodeRange> in = normalize_ranges(ranges), out;
  uint32_t next = 0;
  for (const auto& r : in) {
    if (r.first > next) out.emplace_back(next, r.first - 1);
    next = r.second + 1;
  }
  if (next <= kMaxCodePoint) out.emplace_back(next, kMaxCodePoint);
  return normalize_ranges(out);
}

// Splits each range until its lo and hi encodings differ only in ways a sequence of byte
// ranges can express (the algorithm of RE2 and Rust's regex-syntax utf8 module).
std::vector<std::vector<ByteRange>> utf8_sequences(const std::vector<CodeRange>& ranges) {
  std::vector<std::vector<ByteRange>> out;
  std::vector<CodeRange> work;
  for (auto it = ranges.rbegin(); it != ranges.rend(); ++it) work.push_back(*it);
  static const uint32_t kLenMax[] = {0x7F, 0x7FF, 0xFFFF};
  while (!work.empty()) {
    auto [lo, hi] = work.back();
    work.pop_back();
    bool split = false;
    for (uint32_t m : kLenMax) {  // different encoded lengths
      if (lo <= m && hi > m) {
        work.emplace_back(m + 1, hi);
        work.emplace_back(lo, m);
        split = true;
        break;
      }
    }
    if (split) continue;
    for (int i = 1; i < 4 && !split; ++i) {  // continuation bytes must span full ranges
      const uint32_t max = (1u << (6 * i)) - 1;
      if ((lo & ~max) != (hi & ~max)) {
        if ((lo & max) != 0) {
          work.emplace_back((lo | max) + 1, hi);
          work.emplace_back(lo, lo | max);
          split = true;
        } else if ((hi & max) != max) {
          work.emplace_back(hi & ~max, hi);
          work.emplace_back(lo, (hi & ~max) - 1);
          split = true;
        }
      }
    }
    if (split) continue;
    uint8_t a[4], b[4];
    const int n = encode(lo, a);
    encode(hi, b);
    std::vector<ByteRange> seq;
    for (int i = 0; i < n; ++i) seq.emplace_back(a[i], b[i]);
    out.push_back(std::move(seq));
  }
  return out;
}

void append_utf8(uint32_t cp, std::string* out) {
  uint8_t b[4];
  const int n = encode(cp, b);
  out->append(reinterpret_cast<const char*>(b), n);
}

bool decode_utf8(std::string_view s, size_t* i, uint32_t* cp) {
  const size_t p = *i;
  if (p >= s.size()) return false;
  const uint8_t c = static_cast<uint8_t>(s[p]);
  int n;
  uint32_t v;
  if (c < 0x80) {
    n = 1, v = c;
  } else if (c >= 0xC2 && c <= 0xDF) {
    n = 2, v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, v = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, v = c & 0x07;
  } else {
    return false;
  }
  if (p + n > s.size()) return false;
  for (int k = 1; k < n; ++k) {
    const uint8_t d = static_cast<uint8_t>(s[p + k]);
    if ((d & 0xC0) != 0x80) return false;
    v = (v << 6) | (d & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
  if (utf8_length(v) != n || (v >= kSurrogateLo && v <= kSurrogateHi) || v > kMaxCodePoint) {
    return false;
  }
  *i = p + n;
  *cp = v;
  return true;
}

}  // namespace ktl::grammar
