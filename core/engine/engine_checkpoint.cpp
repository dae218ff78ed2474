#include "core/engine/engine_checkpoint.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <stdexcept>

#include <unistd.h>  // getpid: LibTorch 2.x headers no longer pull it in

#include "core/model/checkpoint.h"
#include "core/base/file_util.h"
#include "core/safetensors/safetensors.h"
#include "core/tokenizer/tokenizer.h"

namespace ktl {

namespace fs = std::filesystem;

bool is_int8_checkpoint(const std::string& dir) {
  const fs::path meta = fs::path(dir) / "meta.json";
  if (!fs::exists(meta)) return false;
  CheckpointMeta m = read_checkpoint_meta(dir);
  auto it = m.extra.find("quantization");
  return it != m.extra.end() && it->second == "int8";
}

namespace {

torch::Tensor tensor_from(const SafetensorsFile& f, const StTensorInfo& t, const std::string& path) {
  torch::ScalarType st;
  switch (t.dtype) {
    case StDtype::F32: st = torch::kFloat32; break;
    case StDtype::BF16: st = torch::kBFloat16; break;
    case StDtype::I8: st = torch::kInt8; break;
    default: throw std::runtime_error(path + ": tensor '" + t.name + "' has unsupported dtype");
  }
  return torch::from_blob(const_cast<void*>(f.data(t)), t.shape, torch::TensorOptions().dtype(st))
      .clone();
}

LoadedEngineModel load_int8(const std::string& dir, WeightDtype dtype) {
  LoadedEngineModel out;
  out.quantization = "int8";
  CheckpointMeta meta = read_checkpoint_meta(dir);
  out.config = read_model_config_json((fs::path(dir) / "config.json").string());
  const std::string weights = (fs::path(dir) / "model.safetensors").string();
  if (!fs::exists(weights)) throw std::runtime_error(dir + ": model.safetensors missing");
  if (!meta.weights_sha256.empty() && sha256_file_hex(weights) != meta.weights_sha256) {
    throw std::runtime_error(weights + ": checksum mismatch (corrupt or modified checkpoint)");
  }
  out.bytes_on_disk = static_cast<int64_t>(fs::file_size(weights));
  SafetensorsFile f = SafetensorsFile::open(weights);
  auto src = [&](const std::string& name) {
    const StTensorInfo* t = f.find(name);
    if (!t) throw std::runtime_error(weights + ": tensor '" + name + "' missing");
    StoredWeight w{tensor_from(f, *t, weights), {}};
    if (w.value.scalar_type() == torch::kInt8) {
      const StTensorInfo* s = f.find(name + "_scale");
      if (!s || s->shape.size() != 1 || s->shape[0] != w.value.size(0)) {
        throw std::runtime_error(weights + ": int8 tensor '" + name + "' lacks a matching scale");
      }
      w.scales = tensor_from(f, *s, weights);
    }
    return w;
  };
  out.model = std::make_shared<EngineModel>(out.config, src, dtype);
  const std::string tok = (fs::path(dir) / "tokenizer.model").string();
  if (!fs::exists(tok)) throw std::runtime_error(dir + ": tokenizer.model missing");
  out.tokenizer = Tokenizer::load(tok);
  return out;
}

}  // namespace

LoadedEngineModel load_engine_model(const std::string& dir, WeightDtype dtype) {
  if (!fs::is_directory(dir)) throw std::runtime_error("checkpoint directory not found: " + dir);
  if (is_int8_checkpoint(dir)) return load_int8(dir, dtype);
  LoadedCheckpoint ck = load_checkpoint(dir, torch::kCPU);
  LoadedEngineModel out;
  out.config = ck.config;
  out.tokenizer = ck.tokenizer;
  out.bytes_on_disk = static_cast<int64_t>(fs::file_size(fs::path(dir) / "model.safetensors"));
  out.model = std::make_shared<EngineModel>(EngineModel::from_module(*ck.model, dtype));
  return out;
}

void save_int8_checkpoint(const EngineModel& model, const std::string& src_dir,
                          const std::string& out_dir) {
  const fs::path final_dir(out_dir);
  if (final_dir.has_parent_path()) fs::create_directories(final_dir.parent_path());
  const fs::path tmp = final_dir.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    auto weights = model.export_weights(WeightDtype::kInt8);
    std::vector<StTensorView> views;
    for (const auto& [name, w] : weights) {
      const auto& v = w.value;
      views.push_back({name, v.scalar_type() == torch::kInt8 ? StDtype::I8 : StDtype::F32,
                       v.sizes().vec(), v.data_ptr(), static_cast<size_t>(v.nbytes())});
      if (w.scales.defined()) {
        views.push_back({name + "_scale", StDtype::F32, w.scales.sizes().vec(), w.scales.data_ptr(),
                         static_cast<size_t>(w.scales.nbytes())});
      }
    }
    write_safetensors((tmp / "model.safetensors").string(), views, {{"quantization", "int8"}});
    fs::copy_file(fs::path(src_dir) / "tokenizer.model", tmp / "tokenizer.model");
    write_file_atomic(tmp / "config.json", model_config_to_json(model.config()));
    CheckpointMeta src_meta;
    if (fs::exists(fs::path(src_dir) / "meta.json")) src_meta = read_checkpoint_meta(src_dir);
    src_meta.extra["quantization"] = "int8";
    src_meta.extra["quantized_from"] = fs::absolute(src_dir).string();
    nlohmann::json m = {{"step", src_meta.step},
                        {"metrics", src_meta.metrics},
                        {"extra", src_meta.extra},
                        {"weights_sha256", sha256_file_hex(tmp / "model.safetensors")},
                        {"format_version", 1}};
    write_file_atomic(tmp / "meta.json", m.dump(2) + "\n");
    if (fs::exists(final_dir)) fs::remove_all(final_dir);
    fs::rename(tmp, final_dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace ktl
