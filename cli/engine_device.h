// --device for the serving commands (serve, generate, bench). Not thread-safe (CLI start-up).
#pragma once

#include "cli/command.h"

namespace ktl::cli {

// The flag, for a command's flag list.
Flag engine_device_flag();
// Refuses (UsageError naming it) an unknown device or one this machine or LibTorch build lacks;
// every device that exists is served (core/engine: the torch-ops path off the CPU).
void check_engine_device(const Args& args);

}  // namespace ktl::cli
