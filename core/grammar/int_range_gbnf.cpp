#include "core/grammar/int_range_gbnf.h"

#include <sstream>
#include <string_view>

namespace ktl::grammar {

namespace {

constexpr int kMaxDigits = 16;

void digit_range(std::ostringstream& out, char from, char to) {
  out << '[' << from;
  if (from != to) out << '-' << to;
  out << ']';
}

void more_digits(std::ostringstream& out, int min_digits, int max_digits) {
  out << "[0-9]";
  if (min_digits == 1 && max_digits == 1) return;
  out << '{' << min_digits;
  if (max_digits != min_digits) out << ',' << max_digits;
  out << '}';
}

// llama.cpp's uniform_range: all numbers from `from` to `to`, two digit strings of one length.
void uniform_range(std::ostringstream& out, std::string_view from, std::string_view to) {
  size_t i = 0;
  while (i < from.size() && from[i] == to[i]) ++i;
  if (i > 0) out << '"' << from.substr(0, i) << '"';
  if (i == from.size()) return;
  if (i > 0) out << ' ';
  const size_t sub_len = from.size() - i - 1;
  if (sub_len == 0) {
    digit_range(out, from[i], to[i]);
    return;
  }
  const std::string_view from_sub = from.substr(i + 1), to_sub = to.substr(i + 1);
  const std::string zeros(sub_len, '0'), nines(sub_len, '9');
  bool to_reached = false;
  out << '(';
  if (from_sub == zeros) {
    digit_range(out, from[i], static_cast<char>(to[i] - 1));
    out << ' ';
    more_digits(out, static_cast<int>(sub_len), static_cast<int>(sub_len));
  } else {
    out << '[' << from[i] << "] (";
    uniform_range(out, from_sub, nines);
    out << ')';
    if (from[i] < to[i] - 1) {
      out << " | ";
      if (to_sub == nines) {
        digit_range(out, static_cast<char>(from[i] + 1), to[i]);
        to_reached = true;
      } else {
        digit_range(out, static_cast<char>(from[i] + 1), static_cast<char>(to[i] - 1));
      }
      out << ' ';
      more_digits(out, static_cast<int>(sub_len), static_cast<int>(sub_len));
    }
  }
  if (!to_reached) {
    out << " | ";
    digit_range(out, to[i], to[i]);
    out << ' ';
    uniform_range(out, zeros, to_sub);
  }
  out << ')';
}

// Non-negative [a, b], one uniform range per digit count.
void positive_range(std::ostringstream& out, int64_t a, int64_t b) {
  std::string from = std::to_string(a);
  const std::string to = std::to_string(b);
  for (size_t d = from.size(); d < to.size(); ++d) {
    uniform_range(out, from, std::string(d, '9'));
    out << " | ";
    from = "1" + std::string(d, '0');
  }
  uniform_range(out, from, to);
}

// Non-negative, >= a, up to kMaxDigits digits.
void positive_min(std::ostringstream& out, int64_t a) {
  const std::string s = std::to_string(a);
  const int len = static_cast<int>(s.size());
  if (a == 0) {
    out << "[0] | [1-9] ";
    more_digits(out, 0, kMaxDigits - 1);
    return;
  }
  uniform_range(out, s, std::string(s.size(), '9'));
  if (len < kMaxDigits) {
    out << " | [1-9] ";
    more_digits(out, len, kMaxDigits - 1);
  }
}

}  // namespace

std::optional<std::string> int_range_gbnf(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  std::ostringstream out;
  if (lo && hi) {
    if (*lo > *hi) return std::nullopt;
    if (*hi < 0) {
      out << "\"-\" (";
      positive_range(out, -*hi, -*lo);
      out << ')';
    } else if (*lo < 0) {
      out << "\"-\" (";
      positive_range(out, 1, -*lo);
      out << ") | ";
      positive_range(out, 0, *hi);
    } else {
      positive_range(out, *lo, *hi);
    }
  } else if (lo) {
    if (*lo < 0) {
      out << "\"-\" (";
      positive_range(out, 1, -*lo);
      out << ") | ";
      positive_min(out, 0);
    } else {
      positive_min(out, *lo);
    }
  } else if (hi) {
    if (*hi >= 0) {
      out << "\"-\" [1-9] ";
      more_digits(out, 0, kMaxDigits - 1);
      out << " | ";
      positive_range(out, 0, *hi);
    } else {
      out << "\"-\" (";
      positive_min(out, -*hi);
      out << ')';
    }
  } else {
    out << "\"-\"? ([0] | [1-9] ";
    more_digits(out, 0, kMaxDigits - 1);
    out << ')';
  }
  return out.str();
}

}  // namespace ktl::grammar
