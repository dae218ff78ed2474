#include "core/speculative/speculative_config.h"

#include <stdexcept>

namespace ktl {

const char* to_string(SpeculativeMode m) {
  switch (m) {
    case SpeculativeMode::kOff:
      return "off";
    case SpeculativeMode::kFixed:
      return "fixed";
    case SpeculativeMode::kAuto:
      return "auto";
  }
  return "?";
}

SpeculativeConfig parse_speculative_mode(const std::string& value, SpeculativeConfig base) {
  if (value == "off") {
    base.mode = SpeculativeMode::kOff;
    return base;
  }
  if (value == "auto") {
    base.mode = SpeculativeMode::kAuto;
    return base;
  }
  size_t used = 0;
  int k = 0;
  try {
    k = std::stoi(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || value.empty() || k < 1 || k > 16) {
    throw std::invalid_argument(
        "--speculative must be off, auto or a number of tokens 1-16, not '" + value + "'");
  }
  base.mode = SpeculativeMode::kFixed;
  base.num_tokens = k;
  return base;
}

}  // namespace ktl
