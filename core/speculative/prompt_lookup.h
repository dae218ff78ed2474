// Prompt lookup (n-gram) speculation: proposes the tokens that followed the most recent earlier
// occurrence of the sequence's last n tokens, for outputs that copy from their prompt
// (summaries, edits, extraction). No model; costs a scan of the sequence.
//
// Thread-safety: a pure function.
#pragma once

#include <vector>

namespace ktl {

// Up to `k` tokens continuing `tokens`: the longest suffix n-gram (max_ngram down to min_ngram)
// that occurred earlier, at its latest earlier position, and the tokens after it; where those
// run into the sequence's end they repeat the period (as an LZ77 copy does). Empty when no
// suffix of length >= min_ngram recurs.
std::vector<int> prompt_lookup(const std::vector<int>& tokens, int max_ngram, int min_ngram, int k);

}  // namespace ktl
