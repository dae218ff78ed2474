// Reads and validates GGUF files (the project's own reader; tests use it to check exports).
// open() memory-maps the file and checks: magic "GGUF", version 2 or 3, every length and count
// inside the file, known metadata types, general.alignment (u32, power of two), tensor dims
// (1-4), known ggml types, and tensor offsets exactly where ggml expects them (each aligned,
// in order, padded sizes back to back) with the data inside the file.
// Thread-safety: a GgufFile is immutable after open(); reads are safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/export/gguf_format.h"

namespace ktl {

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // innermost first
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
  uint64_t n_elements() const;
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);  // throws std::runtime_error naming path+problem
  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute file offset of tensor data
  uint64_t file_size() const { return size_; }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;  // nullptr when absent
  // Typed getters: throw naming the key when absent or of another type.
  uint32_t get_u32(const std::string& key) const;
  float get_f32(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const GgufValue& get_array(const std::string& key, GgufType elem) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  const uint8_t* data(const GgufTensorInfo& t) const { return base_ + data_offset_ + t.offset; }
  // f32, f16, bf16 or q8_0 data as floats.
  std::vector<float> to_f32(const GgufTensorInfo& t) const;

 private:
  GgufFile() = default;
  void parse();
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace ktl
