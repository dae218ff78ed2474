// A tokenizer's vocabulary as the grammar matcher sees it: the bytes each token adds to the
// output, and a byte trie of all of them, built once, so a token mask is one walk over shared
// prefixes instead of one walk per token.
//
// The trie is flattened in preorder: node i has `byte(i)` (the edge from its parent),
// `depth(i)` (root: 0), `subtree_end(i)` (the first node after its subtree, so a dead prefix
// skips its whole subtree) and the tokens that end exactly there. Special tokens and tokens with
// no bytes are left out: a grammar never allows them.
//
// Thread-safety: immutable after construction; share it freely.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ktl::grammar {

class TokenVocab {
 public:
  // token_bytes[i]: the bytes token i adds to the output; special[i]: never allowed by a grammar
  // (control and user-defined tokens, </s>): the engine itself allows end-of-sequence when
  // complete. `special` may be shorter than token_bytes (missing entries: false).
  TokenVocab(std::vector<std::string> token_bytes, std::vector<bool> special);

  int size() const { return static_cast<int>(bytes_.size()); }
  const std::string& token_bytes(int id) const { return bytes_[id]; }
  // False for special and empty tokens: they are never in a mask.
  bool maskable(int id) const { return maskable_[id]; }

  int trie_nodes() const { return static_cast<int>(node_byte_.size()); }
  uint8_t byte(int node) const { return node_byte_[node]; }
  uint16_t depth(int node) const { return node_depth_[node]; }
  int32_t subtree_end(int node) const { return node_end_[node]; }
  // Tokens ending at `node`: token_list()[tokens_begin(node) .. tokens_begin(node + 1)).
  int32_t tokens_begin(int node) const { return node_tokens_[node]; }
  const std::vector<int32_t>& token_list() const { return token_list_; }
  int max_token_bytes() const { return max_len_; }

 private:
  void build_trie();

  std::vector<std::string> bytes_;
  std::vector<bool> maskable_;
  std::vector<uint8_t> node_byte_;
  std::vector<uint16_t> node_depth_;
  std::vector<int32_t> node_end_;
  std::vector<int32_t> node_tokens_;  // trie_nodes() + 1 offsets into token_list_
  std::vector<int32_t> token_list_;
  int max_len_ = 0;
};

}  // namespace ktl::grammar
