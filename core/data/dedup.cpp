#include "core/data/dedup.h"

#include <cmath>
#include <limits>
#include <string>

#include "core/base/utf8_util.h"

namespace ktl {

uint64_t ExactDedup::key(std::string_view text) {
  std::string squashed;
  squashed.reserve(text.size());
  for (char c : text)
    if (c != ' ' && c != '\n' && c != '\t' && c != '\r') squashed += c;
  return utf8::fnv1a64(squashed);
}

bool ExactDedup::is_duplicate(std::string_view text) {
  return !seen_.insert(key(text)).second;
}

NearDedup::NearDedup(NearDedupConfig cfg) : cfg_(cfg) {
  if (cfg_.num_perm < 4) cfg_.num_perm = 4;
  // Pick bands x rows = num_perm whose S-curve midpoint (1/b)^(1/r) is closest to the threshold.
  double best = 1e9;
  for (int r = 1; r <= cfg_.num_perm; ++r) {
    if (cfg_.num_perm % r) continue;
    int b = cfg_.num_perm / r;
    double mid = std::pow(1.0 / b, 1.0 / r);
    if (std::abs(mid - cfg_.threshold) < best) {
      best = std::abs(mid - cfg_.threshold);
      bands_ = b;
      rows_ = r;
    }
  }
  for (int i = 0; i < cfg_.num_perm; ++i) perm_seeds_.push_back(utf8::mix64(cfg_.seed + i));
  tables_.resize(bands_);
}

std::vector<uint32_t> NearDedup::signature(std::string_view text) const {
  std::vector<size_t> starts;  // byte offset of every code point
  for (size_t i = 0; i < text.size();) {
    starts.push_back(i);
    utf8::next(text, i);
  }
  starts.push_back(text.size());
  const size_t n = starts.size() - 1;
  const size_t k = static_cast<size_t>(cfg_.shingle);
  std::vector<uint64_t> shingles;
  if (n <= k) {
    shingles.push_back(utf8::fnv1a64(text));
  } else {
    for (size_t i = 0; i + k <= n; ++i)
      shingles.push_back(utf8::fnv1a64(text.substr(starts[i], starts[i + k] - starts[i])));
  }
  std::vector<uint32_t> sig(cfg_.num_perm, std::numeric_limits<uint32_t>::max());
  for (uint64_t h : shingles)
    for (int p = 0; p < cfg_.num_perm; ++p) {
      uint32_t v = static_cast<uint32_t>(utf8::mix64(h ^ perm_seeds_[p]) >> 32);
      if (v < sig[p]) sig[p] = v;
    }
  return sig;
}

double NearDedup::similarity(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  if (a.size() != b.size() || a.empty()) return 0.0;
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return static_cast<double>(same) / a.size();
}

bool NearDedup::is_duplicate(std::string_view text) {
  auto sig = signature(text);
  std::vector<uint64_t> band_keys(bands_);
  for (int b = 0; b < bands_; ++b) {
    uint64_t h = 0x12345 + b;
    for (int r = 0; r < rows_; ++r) h = utf8::mix64(h ^ sig[b * rows_ + r]);
    band_keys[b] = h;
    auto it = tables_[b].find(h);
    if (it == tables_[b].end()) continue;
    for (uint32_t id : it->second)
      if (similarity(sig, kept_[id]) >= cfg_.threshold) return true;
  }
  const uint32_t id = static_cast<uint32_t>(kept_.size());
  kept_.push_back(std::move(sig));
  for (int b = 0; b < bands_; ++b) tables_[b][band_keys[b]].push_back(id);
  return false;
}

}  // namespace ktl
