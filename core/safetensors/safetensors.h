// The safetensors format, without LibTorch: u64 little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the raw little-endian tensor bytes. Used for checkpoints (model.safetensors) and export.
//
// Thread-safety: a SafetensorsFile is immutable after open(); reads are safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ktl {

enum class StDtype { F32, F16, BF16, I8, U8, I32, I64 };
const char* st_dtype_name(StDtype d);                 // "F32", ...
size_t st_dtype_size(StDtype d);                      // bytes per element
StDtype st_dtype_from_name(const std::string& name);  // throws on unknown

struct StTensorInfo {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  size_t offset = 0;  // into the data section
  size_t nbytes = 0;
};

// A memory-mapped, validated safetensors file. open() checks: header length within the file,
// valid JSON, known dtypes, offsets in order, inside the data section, sizes matching shapes.
// A truncated or corrupt file throws std::runtime_error naming the path and the problem.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::vector<StTensorInfo>& tensors() const { return tensors_; }
  const StTensorInfo* find(const std::string& name) const;  // nullptr when absent
  const void* data(const StTensorInfo& t) const { return base_ + data_start_ + t.offset; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  size_t data_start_ = 0;
  std::vector<StTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: bytes are copied from `data` at write time.
struct StTensorView {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Writes atomically (temp file + rename, streamed: no copy of the whole file in memory).
// The header is padded with spaces so the data section starts 8-byte aligned; offsets are
// contiguous (the Hugging Face reader rejects gaps), and tensors are stably ordered widest dtype
// first so each starts at a multiple of its element size. Throws on bad names/sizes or I/O errors.
void write_safetensors(const std::string& path, const std::vector<StTensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace ktl
