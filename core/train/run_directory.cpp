#include "core/train/run_directory.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <regex>
#include <stdexcept>

#include "core/base/file_util.h"
#include "core/safetensors/safetensors.h"
#include "core/train/adamw.h"
#include "core/train/metrics_sink.h"

namespace ktl {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
constexpr const char* kRngKey = "rng/cpu";
}  // namespace

std::vector<std::pair<int64_t, std::string>> list_step_checkpoints(const std::string& dir) {
  static const std::regex re("checkpoint-([0-9]+)");
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (!e.is_symlink() && e.is_directory() && std::regex_match(name, m, re))
      out.emplace_back(std::stoll(m[1].str()), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void point_run_link(const std::string& output_dir, const std::string& name,
                    const std::string& target_dir) {
  if (target_dir.empty()) return;
  const fs::path link = fs::path(output_dir) / name;
  const fs::path tmp = fs::path(output_dir) / (name + ".tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove(tmp, ec);
  // Relative target: the output directory stays valid when moved or mounted elsewhere.
  fs::create_directory_symlink(fs::path(target_dir).filename(), tmp);
  fs::rename(tmp, link);  // atomic replace of the old link
  fsync_dir(output_dir);
}

void rotate_step_checkpoints(const std::string& output_dir, int keep_last, int64_t protected_step,
                             MetricsSink& sink) {
  const auto all = list_step_checkpoints(output_dir);
  const size_t keep = size_t(std::max(keep_last, 0));
  if (all.size() <= keep) return;
  for (size_t i = 0; i + keep < all.size(); ++i) {
    if (all[i].first == protected_step) continue;
    std::error_code ec;
    fs::remove_all(all[i].second, ec);
    if (ec)
      sink.log("could not delete old checkpoint " + all[i].second + ": " + ec.message());
    else
      sink.checkpoint_deleted(all[i].first, all[i].second);
  }
}

void remove_stale_save_temps(const std::string& output_dir) {
  // Left by a process killed while saving: "<dir>.tmp-<pid>" / "<dir>.old-<pid>".
  static const std::regex re("(checkpoint-[0-9]+|latest|best|final)\\.(tmp|old)-([0-9]+)");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(output_dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (!std::regex_match(name, m, re) || std::stol(m[3].str()) == long(::getpid())) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
  }
}

std::string write_optimizer_file(const std::string& path, const AdamW& optimizer,
                                 const std::map<std::string, torch::Tensor>& extra) {
  std::map<std::string, torch::Tensor> keep;
  for (auto& [name, t] : optimizer.state_tensors())
    keep[name] = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  for (auto& [name, t] : extra) {
    if (keep.count(name) || name == kRngKey)
      throw std::invalid_argument("optimizer file: extra tensor '" + name + "' clashes");
    keep[name] = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  }
  keep[kRngKey] = at::detail::getDefaultCPUGenerator().get_state().contiguous();  // uint8
  std::vector<StTensorView> views;
  for (auto& [name, t] : keep)
    views.push_back({name, t.scalar_type() == torch::kUInt8 ? StDtype::U8 : StDtype::F32,
                     t.sizes().vec(), t.data_ptr(), size_t(t.nbytes())});
  write_safetensors(path, views, {{"format", "ktl-adamw-1"}});
  return sha256_file_hex(path);
}

std::map<std::string, torch::Tensor> read_optimizer_file(const std::string& path,
                                                         const std::string& sha256,
                                                         int64_t adamw_steps, AdamW& optimizer) {
  if (sha256_file_hex(path) != sha256)
    throw std::runtime_error(path + ": checksum mismatch (corrupt or modified checkpoint)");
  auto file = SafetensorsFile::open(path);  // validates offsets and sizes
  std::map<std::string, torch::Tensor> state;
  for (const auto& t : file.tensors()) {
    if (t.dtype != StDtype::U8 && t.dtype != StDtype::F32)
      throw std::runtime_error(path + ": tensor '" + t.name + "' has an unexpected dtype");
    const auto dtype = t.dtype == StDtype::U8 ? torch::kUInt8 : torch::kFloat32;
    state[t.name] = torch::from_blob(const_cast<void*>(file.data(t)), t.shape,
                                     torch::TensorOptions().dtype(dtype))
                        .clone();
  }
  optimizer.load_state(state, adamw_steps);
  if (auto it = state.find(kRngKey); it != state.end()) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle: shares the state
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(it->second);
  }
  std::map<std::string, torch::Tensor> rest;
  const auto own = optimizer.state_tensors();
  for (auto& [name, t] : state)
    if (name != kRngKey && !own.count(name)) rest[name] = t;
  return rest;
}

json read_trainer_state(const std::string& checkpoint_dir) {
  const fs::path d(checkpoint_dir);
  const fs::path state_path = d / kTrainerStateFile;
  if (!fs::exists(state_path))
    throw std::runtime_error(
        checkpoint_dir + ": " + kTrainerStateFile +
        " missing (not a training checkpoint; use --init-from for weights only)");
  if (!fs::exists(d / kOptimizerFile))
    throw std::runtime_error(checkpoint_dir + ": " + kOptimizerFile + " missing");
  try {
    return json::parse(read_file(state_path));
  } catch (const json::exception& e) {
    throw std::runtime_error(state_path.string() + ": invalid JSON: " + e.what());
  }
}

}  // namespace ktl
