#include "cli/default_training_config.h"

#include <filesystem>

#include "core/base/file_util.h"

namespace ktl::cli {

std::string default_training_config_path() {
  return shipped_config_path("configs/training.yaml");
}

std::string shipped_config_path(const std::string& rel) {
  namespace fs = std::filesystem;
  if (fs::exists(rel)) return rel;
  const std::string exe = ktl::executable_path();
  if (!exe.empty()) {
    const fs::path shipped = fs::path(exe).parent_path().parent_path() / rel;
    if (fs::exists(shipped)) return shipped.string();
  }
  return "";
}

}  // namespace ktl::cli
