#include "core/engine/engine_checkpoint.h"

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>

#include <unistd.h>  // getpid: LibTorch 2.x headers no longer pull it in
#if defined(__linux__)
#include <sys/mman.h>  // madvise
#endif

#include "core/base/file_util.h"
#include "core/model/checkpoint.h"
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

// Drops this process's pages of a read-only file mapping (they re-fault from the file if read
// again), so bytes already copied out do not stay in RSS while the mapping lives on.
void release_pages(const void* p, size_t n) {
#if defined(__linux__)
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
#else
  (void)p;
  (void)n;
#endif
}

// A tensor of the file. Aligned F32 data is used in place: the tensor keeps the mapping alive,
// so an fp32 engine holds no second copy of the weights it does not fuse (clean file pages the
// kernel can drop and re-read, as llama.cpp's mmap); when such a tensor goes (a fused or
// converted part), its pages go too. Everything else is copied and its pages dropped at once.
torch::Tensor tensor_from(const std::shared_ptr<SafetensorsFile>& f, const StTensorInfo& t,
                          const std::string& path) {
  torch::ScalarType st;
  switch (t.dtype) {
    case StDtype::F32:
      st = torch::kFloat32;
      break;
    case StDtype::F16:
      st = torch::kFloat16;
      break;
    case StDtype::BF16:
      st = torch::kBFloat16;
      break;
    case StDtype::I8:
      st = torch::kInt8;
      break;
    default:
      throw std::runtime_error(path + ": tensor '" + t.name + "' has unsupported dtype " +
                               st_dtype_name(t.dtype));
  }
  void* p = const_cast<void*>(f->data(t));
  const auto opts = torch::TensorOptions().dtype(st);
  if (t.dtype == StDtype::F32 && reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
    const size_t n = t.nbytes;
    return torch::from_blob(
        p, t.shape, [f, n](void* d) { release_pages(d, n); }, opts);
  }
  auto copy = torch::from_blob(p, t.shape, opts).clone();
  release_pages(p, t.nbytes);
  return copy;
}

// Every checkpoint (fp32, bf16 or int8 on disk) loads straight into the engine's form, without
// building the training module: one tensor at a time, shapes checked against config.json.
LoadedEngineModel load_direct(const std::string& dir, WeightDtype dtype) {
  LoadedEngineModel out;
  CheckpointMeta meta = read_checkpoint_meta(dir);
  auto q = meta.extra.find("quantization");
  out.quantization = q == meta.extra.end() ? "" : q->second;
  out.config = read_model_config_json((fs::path(dir) / "config.json").string());
  const std::string weights = (fs::path(dir) / "model.safetensors").string();
  if (!fs::exists(weights)) throw std::runtime_error(dir + ": model.safetensors missing");
  if (!meta.weights_sha256.empty() && sha256_file_hex(weights) != meta.weights_sha256) {
    throw std::runtime_error(weights + ": checksum mismatch (corrupt or modified checkpoint)");
  }
  out.bytes_on_disk = static_cast<int64_t>(fs::file_size(weights));
  const std::string tok = (fs::path(dir) / "tokenizer.model").string();
  if (!fs::exists(tok)) throw std::runtime_error(dir + ": tokenizer.model missing");
  out.tokenizer = Tokenizer::load(tok);
  if (out.tokenizer->vocab_size() != out.config.vocab_size) {
    throw std::runtime_error(
        dir + ": tokenizer has " + std::to_string(out.tokenizer->vocab_size()) +
        " pieces but config.json says vocab_size " + std::to_string(out.config.vocab_size));
  }
  auto f = std::make_shared<SafetensorsFile>(SafetensorsFile::open(weights));
  auto src = [&](const std::string& name) {
    const StTensorInfo* t = f->find(name);
    if (!t) throw std::runtime_error(weights + ": missing tensor '" + name + "'");
    if (t->shape != hf_weight_shape(out.config, name)) {
      throw std::runtime_error(weights + ": tensor '" + name +
                               "' has the wrong shape for this config");
    }
    StoredWeight w{tensor_from(f, *t, weights), {}};
    if (w.value.scalar_type() == torch::kInt8) {
      const StTensorInfo* s = f->find(name + "_scale");
      if (!s || s->shape.size() != 1 || s->shape[0] != w.value.size(0)) {
        throw std::runtime_error(weights + ": int8 tensor '" + name + "' lacks a matching scale");
      }
      w.scales = tensor_from(f, *s, weights).clone();  // small; not worth holding the mapping
    }
    return w;
  };
  out.model = std::make_shared<EngineModel>(out.config, src, dtype);
  return out;
}

}  // namespace

LoadedEngineModel load_engine_model(const std::string& dir, WeightDtype dtype) {
  if (!fs::is_directory(dir)) throw std::runtime_error("checkpoint directory not found: " + dir);
  return load_direct(dir, dtype);
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
