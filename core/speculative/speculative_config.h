// Speculative decoding settings for serving (`--speculative`, `--prompt-lookup`, `--draft-model`).
// Plain data, torch-free; parsed by the CLI, read by the engine thread.
#pragma once

#include <string>

namespace ktl {

enum class SpeculativeMode {
  kOff,    // never speculate
  kFixed,  // always propose `num_tokens` tokens (fewer near max_tokens or the context's end)
  kAuto,   // choose k each step from measured acceptance and step costs; 0 when it would lose
};

struct SpeculativeConfig {
  SpeculativeMode mode = SpeculativeMode::kOff;
  int num_tokens = 4;         // k in kFixed; the largest k kAuto tries
  int prompt_lookup = 0;      // longest n-gram matched against the sequence itself; 0 = no lookup
  int prompt_lookup_min = 1;  // shortest n-gram tried before giving up for this step
  std::string draft_model;    // draft checkpoint dir (same vocabulary); empty = none
  // The draft's weights: auto (int8) | fp32 | bf16 | int8, whatever the target's. Its precision
  // changes only how often it is right, never the output; int8 reads a quarter of fp32's bytes
  // (on model_draft.yaml's 8k draft, 4 fp32 passes took 9.3 ms of a 30 ms step).
  std::string draft_dtype = "auto";
  bool enabled() const { return mode != SpeculativeMode::kOff; }
};

// "off" | "auto" | a number k >= 1 (kFixed). Throws std::invalid_argument naming the value.
SpeculativeConfig parse_speculative_mode(const std::string& value, SpeculativeConfig base = {});
const char* to_string(SpeculativeMode m);

}  // namespace ktl
