// Device selection: "auto" picks cuda, then mps, then cpu.
#pragma once

#include <torch/types.h>

#include <string>

namespace ktl {

// Throws std::invalid_argument for an unknown name or a device this build/machine lacks.
torch::Device resolve_device(const std::string& name);
bool mps_available();

}  // namespace ktl
