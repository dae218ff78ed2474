#include "core/model/checkpoint_meta.h"

#include <nlohmann/json.hpp>

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
    meta.step = j.at("step").get<int64_t>();
    if (j.contains("metrics")) meta.metrics = j["metrics"].get<std::map<std::string, double>>();
    if (j.contains("extra")) meta.extra = j["extra"].get<std::map<std::string, std::string>>();
    meta.weights_sha256 = j.value("weights_sha256", "");
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": invalid checkpoint metadata: " + e.what());
  }
  return meta;
}

}  // namespace ktl
