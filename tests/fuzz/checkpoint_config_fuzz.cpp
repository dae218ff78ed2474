// libFuzzer target: the torch-free part of checkpoint loading (core/model): config.json ->
// ModelConfig (read_model_config_json) and meta.json (read_checkpoint_meta). The input is
// written as both files; each reader must accept it or throw std::runtime_error. Not covered:
// model.safetensors into tensors (LibTorch; the safetensors_fuzz target covers its parsing),
// tokenizer.model (SentencePiece) and the sha256 check.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>

#include "core/model/checkpoint_meta.h"
#include "core/model/model_config.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string config = ktl::fuzz::write_input("config.json", data, size);
  try {
    auto c = ktl::read_model_config_json(config);
    (void)c.num_parameters();  // accepted configs are validated: must not overflow
    (void)c.flops_per_token(c.max_seq_length);
  } catch (const std::runtime_error&) {
  } catch (const std::exception& e) {
    ktl::fuzz::undocumented_exception(e.what());
  }
  (void)ktl::fuzz::write_input("meta.json", data, size);
  try {
    (void)ktl::read_checkpoint_meta(ktl::fuzz::scratch_dir().string());
  } catch (const std::runtime_error&) {
  } catch (const std::exception& e) {
    ktl::fuzz::undocumented_exception(e.what());
  }
  return 0;
}
