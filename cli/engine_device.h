// --device for the serving commands (serve, generate, bench). Not thread-safe (CLI start-up).
#pragma once

#include "cli/command.h"

namespace ktl::cli {

// The flag, for a command's flag list.
Flag engine_device_flag();
// Refuses a device this machine lacks (UsageError naming it) and, for now, any device but the
// CPU: the engine's paged KV pool and packed int8/bf16 kernels are CPU code.
void check_engine_device(const Args& args);

}  // namespace ktl::cli
