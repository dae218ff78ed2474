#include "core/model/checkpoint_meta.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>

#include "core/base/file_util.h"

namespace ktl {

using json = nlohmann::json;

namespace {

constexpr const char* kMetaFile = "meta.json";

bool is_sha256_hex(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// A manifest name must stay inside the checkpoint: relative, no "..", not meta.json itself.
bool is_safe_relative_name(const std::string& name) {
  const fs::path p(name);
  if (name.empty() || p.is_absolute() || name == kMetaFile) return false;
  for (const auto& part : p)
    if (part == ".." || part == ".") return false;
  return true;
}

std::map<std::string, std::string> read_manifest(const json& files, const std::string& path) {
  auto out = files.get<std::map<std::string, std::string>>();
  for (const auto& [name, sha] : out)
    if (!is_safe_relative_name(name) || !is_sha256_hex(sha))
      throw std::runtime_error(path + ": invalid checkpoint metadata: bad \"files\" entry '" +
                               name + "'");
  return out;
}

}  // namespace

CheckpointMeta read_checkpoint_meta(const std::string& dir) {
  const std::string path = (fs::path(dir) / kMetaFile).string();
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
    if (j.contains("files")) meta.file_sha256 = read_manifest(j["files"], path);
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": invalid checkpoint metadata: " + e.what());
  }
  return meta;
}

std::map<std::string, std::string> hash_checkpoint_files(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.is_symlink()) continue;
    const std::string rel = fs::relative(e.path(), dir).generic_string();
    if (rel != kMetaFile) out[rel] = sha256_file_hex(e.path());
  }
  return out;
}

std::vector<std::string> verify_checkpoint_files(const std::string& dir, bool check_hashes) {
  CheckpointMeta meta;
  try {
    meta = read_checkpoint_meta(dir);
  } catch (const std::exception& e) {
    return {e.what()};
  }
  std::map<std::string, std::string> want = meta.file_sha256;
  if (want.empty())  // written before the manifest: the weights' checksum only ("" = none)
    want["model.safetensors"] = meta.weights_sha256;
  std::vector<std::string> problems;
  for (const auto& [name, sha] : want) {
    const fs::path p = fs::path(dir) / name;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) {
      problems.push_back(p.string() + ": missing (meta.json lists it)");
      continue;
    }
    if (!check_hashes || sha.empty()) continue;
    try {
      if (sha256_file_hex(p) != sha)
        problems.push_back(p.string() + ": checksum mismatch (corrupt or modified)");
    } catch (const std::exception& e) {
      problems.push_back(e.what());  // unreadable (I/O error): names the path
    }
  }
  return problems;
}

}  // namespace ktl
