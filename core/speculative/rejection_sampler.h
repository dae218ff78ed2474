// The verification rule of speculative sampling (Leviathan et al. 2023; Chen et al. 2023): a
// draft token d drawn from the draft's distribution q is kept with probability
// min(1, p(d) / q(d)) under the target's distribution p; when it is not, the replacement is
// drawn from max(0, p - q), renormalised. Every emitted token is then distributed exactly as
// p: speculation changes the speed, never the output distribution. With greedy sampling
// (p one-hot at the argmax) it keeps d exactly when d is the argmax, so greedy output is the
// same token for token.
//
// p and q are what Sampler::distribution gives after the request's penalties, temperature,
// top-k, min-p, top-p and grammar mask, applied to the target's and the draft's logits alike.
//
// Thread-safety: pure functions; the Sampler passed in is the request's, used by one thread.
#pragma once

#include "core/scheduling/sampler.h"

namespace ktl {

struct DraftVerdict {
  bool accepted = false;
  int token = -1;  // the draft token when accepted, else its replacement
};

// Checks one draft token. `q` null: the draft chose `draft` deterministically (prompt lookup, a
// greedy draft), i.e. q is one-hot at it. Random numbers come from `rng` (the request's).
DraftVerdict verify_draft_token(const TokenDistribution& p, const TokenDistribution* q, int draft,
                                Sampler& rng);

}  // namespace ktl
