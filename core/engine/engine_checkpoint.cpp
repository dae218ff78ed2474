#include "core/engine/engine_checkpoint.h"

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>

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

WeightDtype engine_dtype_for(const std::string& dtype) {
  if (dtype.empty() || dtype == "auto") return kDefaultServingDtype;
  return parse_weight_dtype(dtype);
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
  const torch::ScalarType st = torch_dtype_of(t, path);
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

}  // namespace

// Every checkpoint (fp32, bf16 or int8 on disk) loads straight into the engine's form, without
// building the training module: one tensor at a time, shapes checked against config.json.
LoadedEngineModel load_engine_model(const std::string& dir, WeightDtype dtype, bool verify_sha256) {
  CheckpointFiles files = open_checkpoint_files(dir, verify_sha256);
  LoadedEngineModel out;
  auto q = files.meta.extra.find("quantization");
  out.quantization = q == files.meta.extra.end() ? "" : q->second;
  out.config = files.config;
  out.tokenizer = std::move(files.tokenizer);
  const std::string& weights = files.weights;
  out.bytes_on_disk = static_cast<int64_t>(fs::file_size(weights));
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

void save_int8_checkpoint(const EngineModel& model, const std::string& src_dir,
                          const std::string& out_dir) {
  CheckpointMeta meta;
  if (fs::exists(fs::path(src_dir) / "meta.json")) meta = read_checkpoint_meta(src_dir);
  meta.extra["quantization"] = "int8";
  meta.extra["quantized_from"] = fs::absolute(src_dir).string();
  publish_checkpoint_dir(out_dir, std::move(meta), [&](const fs::path& tmp) {
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
    // The chat format and end tokens travel with the tokenizer, whatever they are.
    for (const char* f : {"tokenizer_config.json", "generation_config.json"})
      if (fs::exists(fs::path(src_dir) / f)) fs::copy_file(fs::path(src_dir) / f, tmp / f);
    write_file_atomic(tmp / "config.json", model_config_to_json(model.config()));
  });
}

}  // namespace ktl
