// --kernels auto|avx512|avx2 for the commands that run the model (serve, generate, bench, eval).
// main() has already applied it (tune_runtime reads argv: the libraries read their caps when they
// load or first run); here it is checked and reported. Not thread-safe (CLI start-up).
#pragma once

#include <nlohmann/json.hpp>

#include "cli/command.h"

namespace ktl::cli {

Flag kernels_flag();
// UsageError for a value (or KTL_KERNELS) that is not auto, avx512 or avx2; says the ceiling on
// stderr when it is not auto.
void check_kernels_flag(const Args& args);
// What the kernels run with: {"ceiling", "simd", "cpu_features_native", "aten_cpu_capability",
// "dnnl_max_cpu_isa"} (bench --json; the int8 kernels are added by the caller).
nlohmann::json kernels_json();

}  // namespace ktl::cli
