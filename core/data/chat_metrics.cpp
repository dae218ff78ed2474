#include "core/data/chat_metrics.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "core/base/utf8_util.h"

namespace ktl {
namespace {

// Code points without whitespace (invalid bytes count as U+FFFD).
std::vector<int32_t> chars_no_space(const std::string& s) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < s.size();) {
    const int32_t c = utf8::next(s, i);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x3000) continue;
    out.push_back(c);
  }
  return out;
}

std::map<std::vector<int32_t>, int> ngrams(const std::vector<int32_t>& c, int n) {
  std::map<std::vector<int32_t>, int> out;
  for (size_t i = 0; i + size_t(n) <= c.size(); ++i)
    ++out[std::vector<int32_t>(c.begin() + long(i), c.begin() + long(i) + n)];
  return out;
}

void check_sizes(size_t a, size_t b) {
  if (a != b) throw std::invalid_argument("hypotheses and references differ in number");
}

}  // namespace

double chrf(const std::vector<std::string>& hyps, const std::vector<std::string>& refs, int max_n,
            double beta) {
  check_sizes(hyps.size(), refs.size());
  std::vector<double> match(size_t(max_n) + 1, 0), hyp_total(match), ref_total(match);
  for (size_t i = 0; i < hyps.size(); ++i) {
    const auto h = chars_no_space(hyps[i]), r = chars_no_space(refs[i]);
    for (int n = 1; n <= max_n; ++n) {
      const auto hn = ngrams(h, n), rn = ngrams(r, n);
      for (const auto& [g, k] : hn) {
        hyp_total[n] += k;
        auto it = rn.find(g);
        if (it != rn.end()) match[n] += std::min(k, it->second);
      }
      for (const auto& [g, k] : rn) ref_total[n] += k;
    }
  }
  double p = 0, r = 0;
  int orders = 0;
  for (int n = 1; n <= max_n; ++n) {
    if (hyp_total[n] == 0 || ref_total[n] == 0) continue;  // sacrebleu's effective order
    p += match[n] / hyp_total[n];
    r += match[n] / ref_total[n];
    ++orders;
  }
  if (orders == 0) return 0;
  p /= orders, r /= orders;
  const double b2 = beta * beta;
  return p + r > 0 ? 100.0 * (1 + b2) * p * r / (b2 * p + r) : 0.0;
}

double rouge_l(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  check_sizes(hyps.size(), refs.size());
  if (hyps.empty()) return 0;
  double sum = 0;
  for (size_t i = 0; i < hyps.size(); ++i) {
    const auto h = chars_no_space(hyps[i]), r = chars_no_space(refs[i]);
    if (h.empty() || r.empty()) continue;
    std::vector<int> prev(r.size() + 1, 0), cur(r.size() + 1, 0);
    for (size_t a = 1; a <= h.size(); ++a) {
      for (size_t b = 1; b <= r.size(); ++b)
        cur[b] = h[a - 1] == r[b - 1] ? prev[b - 1] + 1 : std::max(prev[b], cur[b - 1]);
      std::swap(prev, cur);
    }
    const double lcs = prev[r.size()];
    if (lcs == 0) continue;
    const double p = lcs / double(h.size()), rc = lcs / double(r.size());
    sum += 2 * p * rc / (p + rc);
  }
  return 100.0 * sum / double(hyps.size());
}

}  // namespace ktl
