#include "core/grammar/token_vocab.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace ktl::grammar {

namespace {
// Tokens longer than this are never allowed (no tokenizer has them; the depth is uint16_t).
constexpr size_t kMaxTokenBytes = 1024;
}  // namespace

TokenVocab::TokenVocab(std::vector<std::string> token_bytes, std::vector<bool> special)
    : bytes_(std::move(token_bytes)) {
  maskable_.resize(bytes_.size());
  for (size_t i = 0; i < bytes_.size(); ++i) {
    const bool sp = i < special.size() && special[i];
    maskable_[i] = !sp && !bytes_[i].empty() && bytes_[i].size() <= kMaxTokenBytes;
  }
  build_trie();
}

// Sorting the tokens by bytes lays the trie out in preorder directly: each token's node path
// shares the longest common prefix with the previous token, and the rest are new nodes.
void TokenVocab::build_trie() {
  std::vector<int32_t> order;
  for (size_t i = 0; i < bytes_.size(); ++i) {
    if (maskable_[i]) order.push_back(static_cast<int32_t>(i));
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return bytes_[a] < bytes_[b]; });
  node_byte_.push_back(0);
  node_depth_.push_back(0);
  std::vector<int32_t> path{0};  // path[d]: the node at depth d of the previous token
  std::vector<int32_t> node_of_token(order.size());
  const std::string* prev = nullptr;
  for (size_t k = 0; k < order.size(); ++k) {
    const std::string& s = bytes_[order[k]];
    size_t common = 0;
    if (prev) {
      const size_t n = std::min(prev->size(), s.size());
      while (common < n && (*prev)[common] == s[common]) ++common;
    }
    path.resize(common + 1);
    for (size_t d = common; d < s.size(); ++d) {
      path.push_back(static_cast<int32_t>(node_byte_.size()));
      node_byte_.push_back(static_cast<uint8_t>(s[d]));
      node_depth_.push_back(static_cast<uint16_t>(d + 1));
    }
    node_of_token[k] = path[s.size()];
    max_len_ = std::max(max_len_, static_cast<int>(s.size()));
    prev = &s;
  }
  const int32_t n = static_cast<int32_t>(node_byte_.size());
  // subtree_end: the next node whose depth is not greater (a stack of open nodes).
  node_end_.assign(n, n);
  std::vector<int32_t> open;
  for (int32_t i = 0; i < n; ++i) {
    while (!open.empty() && node_depth_[open.back()] >= node_depth_[i]) {
      node_end_[open.back()] = i;
      open.pop_back();
    }
    open.push_back(i);
  }
  // Tokens grouped by node (order is already by node, since nodes follow sorted bytes).
  node_tokens_.assign(n + 1, 0);
  for (int32_t node : node_of_token) ++node_tokens_[node + 1];
  std::partial_sum(node_tokens_.begin(), node_tokens_.end(), node_tokens_.begin());
  token_list_.resize(order.size());
  std::vector<int32_t> fill(node_tokens_.begin(), node_tokens_.end() - 1);
  for (size_t k = 0; k < order.size(); ++k) token_list_[fill[node_of_token[k]]++] = order[k];
}

}  // namespace ktl::grammar
