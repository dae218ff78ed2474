#include "cli/engine_device.h"

#include <stdexcept>
#include <string>

#include "core/model/device.h"

namespace ktl::cli {

Flag engine_device_flag() {
  return {"device",
          "auto | cpu | cuda | mps (auto: cuda, then mps, then cpu; off the CPU the engine runs "
          "torch ops, int8 as bf16)",
          "auto"};
}

void check_engine_device(const Args& args) {
  const std::string name = args.get("device", "auto");
  try {
    resolve_device(name);
  } catch (const std::invalid_argument& e) {
    throw UsageError("--device " + name + ": " + e.what());
  }
}

}  // namespace ktl::cli
