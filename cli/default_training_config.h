// Where `train` and `sweep` find their base training YAML when --config is not given.
#pragma once

#include <string>

namespace ktl::cli {

// ./configs/training.yaml, else the one shipped beside the binary (<exe>/../configs), else ""
// (built-in defaults).
std::string default_training_config_path();

}  // namespace ktl::cli
