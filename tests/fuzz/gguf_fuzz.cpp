// libFuzzer target: the GGUF reader (core/export/gguf_reader). The input is written to a file
// (the reader mmaps), opened, and every tensor is read back (to_f32 where the type allows);
// a corrupt file must throw std::runtime_error.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>

#include "core/export/gguf_reader.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ktl::fuzz::write_input("model.gguf", data, size);
  try {
    auto f = ktl::GgufFile::open(path);
    double sum = 0;
    for (const auto& [key, value] : f.metadata()) sum += key.size() + (f.find(key) ? 1 : 0);
    for (const auto& t : f.tensors()) {
      if (f.find_tensor(t.name) == nullptr) std::abort();  // every listed tensor is findable
      const uint8_t* p = f.data(t);
      for (uint64_t i = 0; i < t.nbytes; ++i) sum += p[i];
      try {
        for (float v : f.to_f32(t)) sum += v;
      } catch (const std::runtime_error&) {  // a type to_f32 does not convert
      }
    }
    volatile double sink = sum;
    (void)sink;
  } catch (const std::runtime_error&) {
  } catch (const std::exception& e) {
    ktl::fuzz::undocumented_exception(e.what());
  }
  return 0;
}
