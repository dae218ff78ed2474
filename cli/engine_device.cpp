#include "cli/engine_device.h"

#include <torch/types.h>

#include <stdexcept>
#include <string>

#include "core/model/device.h"

namespace ktl::cli {

Flag engine_device_flag() {
  return {"device", "cpu, cuda or mps (the engine runs on cpu today)", "cpu"};
}

void check_engine_device(const Args& args) {
  const std::string name = args.get("device", "cpu");
  torch::Device device = torch::kCPU;
  try {
    device = resolve_device(name);
  } catch (const std::invalid_argument& e) {
    throw UsageError("--device " + name + ": " + e.what());
  }
  if (!device.is_cpu())
    throw UsageError("--device " + name +
                     ": the serving engine runs on CPU only in this build "
                     "(its paged KV pool and int8/bf16 kernels are CPU code); `ktl train`, "
                     "`ktl eval` and `ktl bench-train` do run on " +
                     name);
}

}  // namespace ktl::cli
