// `ktl bench --profile`: the decode steps' StepProfile (core/engine/step_profile.h) as a JSON
// object and as a table, each part in ms per decode step and in % of the step.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/engine/step_profile.h"

namespace ktl::cli {

// {"decode_steps", "rows_per_step", "step_ms", "parts": {"matmuls": {"ms", "pct"}, ...,
// "other": {...}}}: ms per decode step; the parts' pct add up to 100.
nlohmann::json bench_profile_json(const StepProfile& p);
// The same, one line per part, indented under a heading.
std::string bench_profile_table(const StepProfile& p);

}  // namespace ktl::cli
