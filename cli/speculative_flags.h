// --speculative, --draft-model, --prompt-lookup for the serving commands (serve, generate,
// bench). Not thread-safe (CLI start-up).
#pragma once

#include <vector>

#include "cli/command.h"
#include "core/speculative/speculative_config.h"

namespace ktl::cli {

std::vector<Flag> speculative_flags();
// `flags` followed by speculative_flags(), for a command's flag list.
std::vector<Flag> with_speculative_flags(std::vector<Flag> flags);
// The settings the flags ask for. --draft-model or --prompt-lookup without --speculative means
// auto; --speculative k|auto with neither is a UsageError, as is a draft directory that is not
// one.
SpeculativeConfig speculative_from_args(const Args& args);

}  // namespace ktl::cli
