// libFuzzer target: the token-shard reader (core/data/token_shard). The input is written to a
// file (the reader mmaps), opened, and every token read back through get() and copy_to(); a
// corrupt shard must throw std::runtime_error, and an accepted one must hold n_tokens tokens.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <vector>

#include "core/data/token_shard.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ktl::fuzz::write_input("train.bin", data, size);
  try {
    (void)ktl::TokenShard::read_header(path);
    auto shard = ktl::TokenShard::open(path);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < shard->size(); ++i) sum += shard->get(i);
    std::vector<int64_t> out(shard->size());
    if (!out.empty()) shard->copy_to(0, out.size(), out.data());
    for (int64_t v : out) sum -= static_cast<uint64_t>(v);
    if (sum != 0) std::abort();  // copy_to and get() disagree
  } catch (const std::runtime_error&) {
  } catch (const std::exception& e) {
    ktl::fuzz::undocumented_exception(e.what());
  }
  return 0;
}
