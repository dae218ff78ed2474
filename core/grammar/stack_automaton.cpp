#include "core/grammar/stack_automaton.h"

#include <algorithm>
#include <cstring>

namespace ktl::grammar {

namespace {
// compact() rebuilds past these (about 100 MB at worst).
constexpr size_t kMaxNodes = 1 << 21;
constexpr size_t kMaxStates = 1 << 14;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
}  // namespace

StackAutomaton::StackAutomaton(const CompiledGrammar& g)
    : g_(g), nc_(static_cast<size_t>(g.num_classes())) {
  clear();
}

void StackAutomaton::clear() {
  nodes_.assign(1, Node{-1, 0});  // id 0: the empty stack
  node_index_.clear();
  stack_pool_.clear();
  state_begin_.assign(1, 0);
  state_index_.clear();
  trans_.clear();
  masks_.clear();
}

int32_t StackAutomaton::intern_node(int32_t pos, int32_t parent) {
  auto [it, inserted] = node_index_.emplace(pair_key(pos, parent), 0);
  if (inserted) {
    it->second = static_cast<int32_t>(nodes_.size());
    nodes_.push_back({pos, parent});
  }
  return it->second;
}

int32_t StackAutomaton::intern_state(std::vector<int32_t>* stacks) {
  std::sort(stacks->begin(), stacks->end());
  stacks->erase(std::unique(stacks->begin(), stacks->end()), stacks->end());
  std::string key(stacks->size() * sizeof(int32_t), '\0');
  std::memcpy(key.data(), stacks->data(), key.size());
  auto [it, inserted] = state_index_.emplace(std::move(key), 0);
  if (!inserted) return it->second;
  const int32_t id = static_cast<int32_t>(num_states());
  it->second = id;
  stack_pool_.insert(stack_pool_.end(), stacks->begin(), stacks->end());
  state_begin_.push_back(static_cast<int32_t>(stack_pool_.size()));
  trans_.resize(trans_.size() + nc_, kUnknown);
  masks_.emplace_back();
  return id;
}

// Expands (position, parent stack) pairs until every stack has a byte set on top; results in
// out_. Each pair is expanded once (seen_), and the total work is bounded, so an ambiguous
// grammar costs at most a fixed budget and then reads as dead. False when over the bound.
bool StackAutomaton::expand(std::vector<std::pair<int32_t, int32_t>>* work) {
  const auto& elems = g_.elems();
  const size_t max_stacks = g_.limits().max_stacks;
  size_t budget = 16 * max_stacks + 1024;
  seen_.clear();
  while (!work->empty()) {
    auto [pos, parent] = work->back();
    work->pop_back();
    if (!seen_.insert(pair_key(pos, parent)).second) continue;
    if (--budget == 0) return false;
    const Elem e = elems[pos];
    if (e.type == ElemType::kBytes) {
      out_.push_back(intern_node(pos, parent));
      if (out_.size() > max_stacks) return false;
    } else if (e.type == ElemType::kEnd) {
      if (parent == 0) {
        out_.push_back(0);
      } else {
        work->emplace_back(nodes_[parent].pos, nodes_[parent].parent);
      }
    } else {
      // Tail call: when the reference ends its alternative, nothing is pushed to return to.
      const int32_t cont = pos + 1;
      const int32_t np = elems[cont].type == ElemType::kEnd ? parent : intern_node(cont, parent);
      const auto& starts = g_.alt_starts();
      for (int32_t a = g_.alt_begin(e.value); a < g_.alt_begin(e.value + 1); ++a) {
        work->emplace_back(starts[a], np);
      }
    }
  }
  return true;
}

int32_t StackAutomaton::initial() {
  std::vector<std::pair<int32_t, int32_t>> work;
  const auto& starts = g_.alt_starts();
  for (int32_t a = g_.alt_begin(g_.root()); a < g_.alt_begin(g_.root() + 1); ++a) {
    work.emplace_back(starts[a], 0);
  }
  out_.clear();
  if (!expand(&work) || out_.empty()) return kDead;
  return intern_state(&out_);
}

int32_t StackAutomaton::compute(int32_t state, int cls) {
  const uint8_t byte = g_.class_byte(cls);
  std::vector<std::pair<int32_t, int32_t>> work;
  auto [p, n] = stacks(state);
  for (size_t i = 0; i < n; ++i) {
    if (p[i] == 0) continue;
    const Node node = nodes_[p[i]];
    if (g_.set(g_.elems()[node.pos].value).test(byte)) work.emplace_back(node.pos + 1, node.parent);
  }
  out_.clear();
  int32_t next = kDead;
  if (!work.empty() && expand(&work) && !out_.empty()) next = intern_state(&out_);
  trans_[static_cast<size_t>(state) * nc_ + cls] = next;
  return next;
}

std::string StackAutomaton::canonical_key(int32_t state) const {
  std::vector<std::string> parts;
  auto [p, n] = stacks(state);
  for (size_t i = 0; i < n; ++i) {
    std::vector<int32_t> positions;
    for (int32_t id = p[i]; id != 0; id = nodes_[id].parent) positions.push_back(nodes_[id].pos);
    // Length-prefixed, so the concatenation of sorted parts is unambiguous.
    const int32_t len = static_cast<int32_t>(positions.size());
    std::string s(reinterpret_cast<const char*>(&len), sizeof(len));
    s.append(reinterpret_cast<const char*>(positions.data()), positions.size() * sizeof(int32_t));
    parts.push_back(std::move(s));
  }
  std::sort(parts.begin(), parts.end());
  std::string key;
  for (const auto& s : parts) key += s;
  return key;
}

int32_t StackAutomaton::compact(int32_t keep) {
  if (nodes_.size() < kMaxNodes && num_states() < kMaxStates) return keep;
  // Copy keep's stacks out as position lists, then rebuild them in a fresh arena.
  std::vector<std::vector<int32_t>> lists;
  auto [p, n] = stacks(keep);
  for (size_t i = 0; i < n; ++i) {
    std::vector<int32_t> l;
    for (int32_t id = p[i]; id != 0; id = nodes_[id].parent) l.push_back(nodes_[id].pos);
    lists.push_back(std::move(l));
  }
  auto mask = masks_[keep];
  clear();
  std::vector<int32_t> ids;
  for (const auto& l : lists) {
    int32_t id = 0;
    for (auto it = l.rbegin(); it != l.rend(); ++it) id = intern_node(*it, id);
    ids.push_back(id);
  }
  const int32_t s = intern_state(&ids);
  masks_[s] = std::move(mask);
  return s;
}

}  // namespace ktl::grammar
