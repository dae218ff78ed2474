// Where `train` and `sweep` find their base training YAML when --config is not given (and
// `distill` its draft model YAML).
#pragma once

#include <string>

namespace ktl::cli {

// ./configs/training.yaml, else the one shipped beside the binary (<exe>/../configs), else ""
// (built-in defaults).
std::string default_training_config_path();

// ./<relative> (e.g. "configs/model_draft.yaml"), else the one shipped beside the binary
// (<exe>/../<relative>), else "".
std::string shipped_config_path(const std::string& relative);

}  // namespace ktl::cli
