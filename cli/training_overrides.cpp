#include "cli/training_overrides.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "core/train/run_directory.h"

namespace ktl::cli {

TrainingConfig resolve_training_overrides(const Args& args, TrainingConfig c,
                                          const std::vector<std::string>& own_flags,
                                          const std::string& command) {
  std::string path = args.get("config");
  if (path.empty() && args.has("resume-from")) {
    const auto p = std::filesystem::path(args.get("resume-from")) / kTrainingConfigFile;
    if (std::filesystem::exists(p)) path = p.string();
  }
  if (!path.empty()) load_training_config_into(path, c);
  for (const auto& [name, value] : args.items()) {
    if (std::find(own_flags.begin(), own_flags.end(), name) != own_flags.end()) continue;
    const std::string key = training_key_from_flag(name);
    if (key.empty())
      throw UsageError("unknown flag --" + name + " (see 'ktl " + command + " --help')");
    try {
      set_training_key(c, key, value);
    } catch (const std::invalid_argument& e) {
      throw UsageError("--" + name + " (" + key + "): " + e.what());
    }
  }
  return c;
}

}  // namespace ktl::cli
