// Writes GGUF v3 files (ggml/docs/gguf.md): header, metadata key/values in insertion order,
// tensor infos, then tensor data, each tensor padded to the alignment. Tensor bytes come from
// callbacks run at write time, so at most one tensor is held in memory. The file is streamed to
// a temporary name and renamed into place: a failure never leaves a partial file.
// Thread-safety: not thread-safe; build and write from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/export/gguf_format.h"

namespace ktl {

class GgufWriter {
 public:
  // alignment must be a power of two; a non-default one is recorded as general.alignment.
  explicit GgufWriter(uint32_t alignment = kGgufDefaultAlignment);

  // Sets a metadata key; replacing an existing key keeps its position.
  void set(const std::string& key, GgufValue value);

  // ne: ggml dims, innermost first (a PyTorch [rows, cols] weight is ne = {cols, rows}).
  // bytes() must return exactly ggml_nbytes(type, ne) bytes.
  void add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> ne,
                  std::function<std::string()> bytes);

  size_t tensor_count() const { return tensors_.size(); }
  uint32_t alignment() const { return alignment_; }

  // Returns the number of bytes written. Throws std::runtime_error on I/O errors or bad sizes.
  uint64_t write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<uint64_t> ne;
    uint64_t nbytes;
    std::function<std::string()> bytes;
  };
  uint32_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace ktl
