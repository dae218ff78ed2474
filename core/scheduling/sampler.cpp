#include "core/scheduling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace ktl {

namespace {

// Higher logit first, lower id on ties: the one order for top-k and the rivals of a logprob.
struct LogitGreater {
  const float* logits;
  bool operator()(int a, int b) const {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  }
};

}  // namespace

int argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

void Sampler::validate(const SamplingParams& p) {
  auto bad = [](const std::string& m) { throw std::invalid_argument(m); };
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) bad("temperature must be >= 0");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) bad("top_p must be in (0, 1]");
  if (p.top_k < 0) bad("top_k must be >= 0");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) bad("min_p must be in [0, 1]");
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty)) {
    bad("repetition_penalty must be > 0");
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    bad("presence_penalty must be in [-2, 2]");
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    bad("frequency_penalty must be in [-2, 2]");
  }
  if (p.max_tokens < 0) bad("max_tokens must be >= 0");
  if (p.logprobs < -1 || p.logprobs > kMaxTopLogprobs) {
    bad("logprobs must be in [0, " + std::to_string(kMaxTopLogprobs) + "]");
  }
  for (const auto& s : p.stop) {
    if (s.empty()) bad("stop strings must not be empty");
  }
}

Sampler::Sampler(const SamplingParams& params, const std::vector<int>& prompt_tokens,
                 uint64_t fallback_seed)
    : p_(params), rng_(params.seed ? *params.seed : fallback_seed) {
  if (p_.repetition_penalty != 1.0f) seen_.insert(prompt_tokens.begin(), prompt_tokens.end());
}

void Sampler::accept(int token) {
  if (p_.repetition_penalty != 1.0f) seen_.insert(token);
  ++out_counts_[token];
}

void Sampler::apply_penalties(float* logits, int vocab) const {
  if (p_.repetition_penalty != 1.0f) {
    for (int t : seen_) {
      if (t < 0 || t >= vocab) continue;
      float& l = logits[t];
      l = l > 0 ? l / p_.repetition_penalty : l * p_.repetition_penalty;
    }
  }
  if (p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) {
    for (const auto& [t, n] : out_counts_) {
      if (t < 0 || t >= vocab) continue;
      logits[t] -= p_.presence_penalty + p_.frequency_penalty * static_cast<float>(n);
    }
  }
}

double TokenDistribution::prob(int id) const {
  if (total <= 0) return 0;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == id) return weights[i] / total;
  return 0;
}

double Sampler::uniform() {
  // 53 random bits -> [0, 1): identical across platforms, unlike std::uniform_real_distribution.
  return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);
}

int Sampler::draw(const TokenDistribution& d) {
  if (p_.temperature == 0.0f) return d.ids.front();  // greedy draws nothing
  const double target = uniform() * d.total;
  double acc = 0;
  for (size_t i = 0; i < d.ids.size(); ++i) {
    acc += d.weights[i];
    if (target < acc) return d.ids[i];
  }
  return d.ids.back();
}

int Sampler::sample(float* logits, int vocab, const std::vector<int>* candidates) {
  return draw(distribution(logits, vocab, candidates));
}

const TokenDistribution& Sampler::distribution(float* logits, int vocab,
                                               const std::vector<int>* candidates) {
  TokenDistribution& d = dist_;
  apply_penalties(logits, vocab);
  if (p_.temperature == 0.0f) {
    int best = 0;
    if (!candidates) {
      best = argmax(logits, vocab);
    } else {
      best = candidates->front();
      for (int id : *candidates)
        if (logits[id] > logits[best]) best = id;
    }
    d.ids.assign(1, best);
    d.weights.assign(1, 1.0f);
    d.total = 1;
    return d;
  }
  const float inv_t = 1.0f / p_.temperature;

  // Candidates: the whole vocabulary (or the given ones), or the k largest logits of them.
  if (candidates) {
    ids_ = *candidates;
  } else {
    ids_.resize(vocab);
    for (int i = 0; i < vocab; ++i) ids_[i] = i;
  }
  const LogitGreater by_logit{logits};
  if (p_.top_k > 0 && p_.top_k < static_cast<int>(ids_.size())) {
    std::nth_element(ids_.begin(), ids_.begin() + p_.top_k, ids_.end(), by_logit);
    ids_.resize(p_.top_k);
    // Draw in id order, not nth_element's: the draw then depends on the kept set alone, so a
    // masked row and its candidate list give the same token for the same seed.
    std::sort(ids_.begin(), ids_.end());
  }
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int id : ids_) max_logit = std::max(max_logit, logits[id]);
  probs_.resize(ids_.size());
  double total = 0;
  for (size_t i = 0; i < ids_.size(); ++i) {
    probs_[i] = std::exp((logits[ids_[i]] - max_logit) * inv_t);
    total += probs_[i];
  }
  // min-p first (no sorting needed): p >= min_p * p_max; p_max's unnormalised value is 1.
  if (p_.min_p > 0.0f) {
    size_t k = 0;
    double kept = 0;
    for (size_t i = 0; i < ids_.size(); ++i) {
      if (probs_[i] >= p_.min_p) {
        ids_[k] = ids_[i];
        probs_[k] = probs_[i];
        kept += probs_[k];
        ++k;
      }
    }
    ids_.resize(k);
    probs_.resize(k);
    total = kept;
  }
  if (p_.top_p < 1.0f) {
    // Sort a growing prefix until it holds top_p of the mass.
    std::vector<size_t> order(ids_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto by_prob = [this](size_t a, size_t b) {
      return probs_[a] > probs_[b] || (probs_[a] == probs_[b] && ids_[a] < ids_[b]);
    };
    const double need = p_.top_p * total;
    size_t sorted = std::min<size_t>(64, order.size());
    while (true) {
      std::partial_sort(order.begin(), order.begin() + sorted, order.end(), by_prob);
      double acc = 0;
      size_t cut = 0;
      while (cut < sorted && acc < need) acc += probs_[order[cut++]];
      if (acc >= need || sorted == order.size()) {
        d.ids.resize(cut);
        d.weights.resize(cut);
        for (size_t i = 0; i < cut; ++i) {
          d.ids[i] = ids_[order[i]];
          d.weights[i] = probs_[order[i]];
        }
        d.total = acc;
        return d;
      }
      sorted = std::min(order.size(), sorted * 4);
    }
  }
  d.ids.swap(ids_);
  d.weights.swap(probs_);
  d.total = total;
  return d;
}

TokenLogprob token_logprob(const float* logits, int vocab, int token, int top) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const double lse = mx + std::log(sum);
  TokenLogprob out;
  out.token = token;
  out.logprob = static_cast<float>(logits[token] - lse);
  top = std::min(top, vocab);
  if (top <= 0) return out;
  // A min-heap of the best `top` so far: O(V log k), no V-sized scratch.
  const LogitGreater better{logits};
  std::vector<int> heap;
  heap.reserve(top + 1);
  for (int i = 0; i < vocab; ++i) {
    if (static_cast<int>(heap.size()) < top) {
      heap.push_back(i);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(i, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = i;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  for (int id : heap) out.top.emplace_back(id, static_cast<float>(logits[id] - lse));
  return out;
}

}  // namespace ktl
