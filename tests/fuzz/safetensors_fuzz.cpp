// libFuzzer target: the safetensors reader (core/safetensors). The input is written to a file
// (the reader mmaps), opened, and every tensor's bytes are read; a corrupt file must throw
// std::runtime_error, and what open() accepts must be readable without going out of bounds.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>

#include "core/safetensors/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ktl::fuzz::write_input("model.safetensors", data, size);
  try {
    auto f = ktl::SafetensorsFile::open(path);
    uint64_t sum = 0;
    for (const auto& t : f.tensors()) {
      if (f.find(t.name) == nullptr) std::abort();  // every listed tensor is findable
      const auto* p = static_cast<const uint8_t*>(f.data(t));
      for (size_t i = 0; i < t.nbytes; ++i) sum += p[i];
    }
    for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const std::runtime_error&) {
  } catch (const std::exception& e) {
    ktl::fuzz::undocumented_exception(e.what());
  }
  return 0;
}
