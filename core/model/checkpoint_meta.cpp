#include "core/model/checkpoint_meta.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>

#include "core/base/file_util.h"

namespace ktl {

using json = nlohmann::json;

CheckpointMeta read_checkpoint_meta(const std::string& dir) {
  const std::string path = (fs::path(dir) / "meta.json").string();
  if (!fs::exists(path))
    throw std::runtime_error(dir + ": not a complete checkpoint (meta.json missing)");
  CheckpointMeta meta;
  try {
    json j = json::parse(read_file(path));
    const json& step = j.at("step");
    // get<int64_t>() of a float is UB when out of range, and wraps an unsigned above INT64_MAX.
    if (!step.is_number_integer() ||
        (step.is_number_unsigned() && step.get<uint64_t>() > INT64_MAX) || step.get<int64_t>() < 0)
      throw std::runtime_error(path +
                               ": invalid checkpoint metadata: step must be an integer >= 0");
    meta.step = step.get<int64_t>();
    if (j.contains("metrics")) meta.metrics = j["metrics"].get<std::map<std::string, double>>();
    if (j.contains("extra")) meta.extra = j["extra"].get<std::map<std::string, std::string>>();
    meta.weights_sha256 = j.value("weights_sha256", "");
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": invalid checkpoint metadata: " + e.what());
  }
  return meta;
}

}  // namespace ktl
