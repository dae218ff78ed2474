// The training keys of `ktl sft` and `ktl dpo`: the command's defaults, then --config (or, when
// resuming, the checkpoint's training_config.yaml), then every --<key> flag that is not one of
// the command's own. Thread-safety: a pure function.
#pragma once

#include <string>
#include <vector>

#include "cli/command.h"
#include "core/train/training_config.h"

namespace ktl::cli {

// Throws UsageError naming the flag for an unknown flag or a bad value.
TrainingConfig resolve_training_overrides(const Args& args, TrainingConfig defaults,
                                          const std::vector<std::string>& own_flags,
                                          const std::string& command);

}  // namespace ktl::cli
