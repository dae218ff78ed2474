#include "core/speculative/rejection_sampler.h"

#include <algorithm>
#include <vector>

namespace ktl {

namespace {

// max(0, p - q) over p's candidates (q's mass elsewhere only makes the difference negative).
TokenDistribution residual(const TokenDistribution& p, const TokenDistribution* q, int draft) {
  TokenDistribution r;
  r.ids = p.ids;
  r.weights.resize(p.ids.size());
  std::vector<double> qd;  // q by id (dense: one pass over q's candidates)
  if (q) {
    int max_id = 0;
    for (int id : q->ids) max_id = std::max(max_id, id);
    qd.assign(static_cast<size_t>(max_id) + 1, 0.0);
    for (size_t i = 0; i < q->ids.size(); ++i) qd[q->ids[i]] = q->weights[i] / q->total;
  }
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const int id = p.ids[i];
    const double pi = p.weights[i] / p.total;
    double qi = 0;
    if (!q) {
      qi = id == draft ? 1.0 : 0.0;
    } else if (id < static_cast<int>(qd.size())) {
      qi = qd[id];
    }
    r.weights[i] = static_cast<float>(std::max(0.0, pi - qi));
    r.total += r.weights[i];
  }
  return r;
}

}  // namespace

DraftVerdict verify_draft_token(const TokenDistribution& p, const TokenDistribution* q, int draft,
                                Sampler& rng) {
  if (p.ids.size() == 1) return {draft == p.ids.front(), p.ids.front()};  // greedy: no draw
  const double pd = p.prob(draft);
  const double qd = q ? q->prob(draft) : 1.0;
  if (pd > 0 && (pd >= qd || rng.uniform() * qd < pd)) return {true, draft};
  const TokenDistribution r = residual(p, q, draft);
  // p == q up to rounding leaves nothing: p itself is then the residual's limit.
  return {false, rng.draw(r.total > 0 ? r : p)};
}

}  // namespace ktl
