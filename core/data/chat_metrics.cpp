#include "core/data/chat_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
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

// Per pair and order n: matched, hypothesis and reference n-gram counts (index 3n, 3n+1, 3n+2).
std::vector<std::vector<double>> chrf_stats(const std::vector<std::string>& hyps,
                                            const std::vector<std::string>& refs, int max_n) {
  check_sizes(hyps.size(), refs.size());
  std::vector<std::vector<double>> out(hyps.size(), std::vector<double>(3 * size_t(max_n + 1), 0));
  for (size_t i = 0; i < hyps.size(); ++i) {
    const auto h = chars_no_space(hyps[i]), r = chars_no_space(refs[i]);
    auto& st = out[i];
    for (int n = 1; n <= max_n; ++n) {
      const auto hn = ngrams(h, n), rn = ngrams(r, n);
      for (const auto& [g, k] : hn) {
        st[3 * size_t(n) + 1] += k;
        auto it = rn.find(g);
        if (it != rn.end()) st[3 * size_t(n)] += std::min(k, it->second);
      }
      for (const auto& [g, k] : rn) st[3 * size_t(n) + 2] += k;
    }
  }
  return out;
}

// chrF from summed statistics.
double chrf_from(const std::vector<double>& sum, int max_n, double beta) {
  double p = 0, r = 0;
  int orders = 0;
  for (int n = 1; n <= max_n; ++n) {
    const double match = sum[3 * size_t(n)], hyp = sum[3 * size_t(n) + 1],
                 ref = sum[3 * size_t(n) + 2];
    if (hyp == 0 || ref == 0) continue;  // sacrebleu's effective order
    p += match / hyp;
    r += match / ref;
    ++orders;
  }
  if (orders == 0) return 0;
  p /= orders, r /= orders;
  const double b2 = beta * beta;
  return p + r > 0 ? 100.0 * (1 + b2) * p * r / (b2 * p + r) : 0.0;
}

std::vector<double> rouge_l_f1(const std::vector<std::string>& hyps,
                               const std::vector<std::string>& refs) {
  check_sizes(hyps.size(), refs.size());
  std::vector<double> out(hyps.size(), 0.0);
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
    out[i] = 100.0 * 2 * p * rc / (p + rc);
  }
  return out;
}

// Percentile bootstrap of a statistic of summed per-example vectors: `stat(sum)` on the full
// sample and on `resamples` resamples of the rows drawn with replacement.
template <typename Stat>
ScoreInterval bootstrap(const std::vector<std::vector<double>>& rows, const BootstrapOptions& o,
                        Stat stat) {
  ScoreInterval s;
  s.level = o.level;
  s.n = int64_t(rows.size());
  if (rows.empty()) return s;
  if (o.resamples < 1 || !(o.level > 0 && o.level < 1))
    throw std::invalid_argument("bootstrap needs resamples >= 1 and a level in (0, 1)");
  const size_t width = rows[0].size(), n = rows.size();
  std::vector<double> sum(width, 0);
  for (const auto& r : rows)
    for (size_t k = 0; k < width; ++k) sum[k] += r[k];
  s.value = stat(sum);
  std::vector<double> values(size_t(o.resamples));
  uint64_t counter = utf8::mix64(o.seed);
  for (auto& v : values) {
    std::fill(sum.begin(), sum.end(), 0.0);
    for (size_t i = 0; i < n; ++i) {
      const auto& r = rows[size_t(utf8::mix64(++counter) % n)];
      for (size_t k = 0; k < width; ++k) sum[k] += r[k];
    }
    v = stat(sum);
  }
  std::sort(values.begin(), values.end());
  const double b = double(values.size());
  auto rank = [&](double p) {  // nearest rank: the ceil(p * B)-th smallest
    const auto k = int64_t(std::ceil(p * b - 1e-9));
    return values[size_t(std::clamp<int64_t>(k, 1, int64_t(values.size())) - 1)];
  };
  s.low = rank((1 - o.level) / 2);
  s.high = rank((1 + o.level) / 2);
  return s;
}

}  // namespace

double chrf(const std::vector<std::string>& hyps, const std::vector<std::string>& refs, int max_n,
            double beta) {
  std::vector<double> sum(3 * size_t(max_n + 1), 0);
  for (const auto& st : chrf_stats(hyps, refs, max_n))
    for (size_t k = 0; k < sum.size(); ++k) sum[k] += st[k];
  return chrf_from(sum, max_n, beta);
}

double rouge_l(const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
  const auto f1 = rouge_l_f1(hyps, refs);
  if (f1.empty()) return 0;
  double sum = 0;
  for (double f : f1) sum += f;
  return sum / double(f1.size());
}

ScoreInterval chrf_interval(const std::vector<std::string>& hyps,
                            const std::vector<std::string>& refs, const BootstrapOptions& o,
                            int max_n, double beta) {
  return bootstrap(chrf_stats(hyps, refs, max_n), o,
                   [&](const std::vector<double>& sum) { return chrf_from(sum, max_n, beta); });
}

ScoreInterval mean_interval(const std::vector<double>& xs, const BootstrapOptions& o) {
  std::vector<std::vector<double>> rows;
  rows.reserve(xs.size());
  for (double x : xs) rows.push_back({x});
  const double n = double(xs.size());
  return bootstrap(rows, o, [n](const std::vector<double>& sum) { return sum[0] / n; });
}

ScoreInterval rouge_l_interval(const std::vector<std::string>& hyps,
                               const std::vector<std::string>& refs, const BootstrapOptions& o) {
  return mean_interval(rouge_l_f1(hyps, refs), o);
}

std::string format_interval(const ScoreInterval& s) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%.2f [%.0f%% CI %.2f, %.2f; n=%lld]", s.value, 100 * s.level,
                s.low, s.high, (long long)s.n);
  return buf;
}

}  // namespace ktl
