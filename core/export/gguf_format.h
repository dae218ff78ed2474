// GGUF building blocks shared by the writer, the reader and the exporter: the value types of the
// metadata, the ggml tensor types we write (f32, f16, q8_0), fp16 conversion and q8_0 blocks.
// Follows ggml/docs/gguf.md (version 3, little-endian) and ggml's reference quantizer.
// Thread-safety: everything here is a pure function or an immutable value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ktl {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kGgufVersion = 3;
constexpr uint32_t kGgufDefaultAlignment = 32;  // when general.alignment is absent

// Metadata value types (gguf_metadata_value_type).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* gguf_type_name(GgufType t);

// Tensor element types (ggml_type), only those this project reads or writes.
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ8_0 = 8, kBF16 = 30 };
const char* ggml_type_name(GgmlType t);
bool ggml_type_known(uint32_t t);
size_t ggml_block_size(GgmlType t);  // elements per block (32 for q8_0, else 1)
size_t ggml_type_size(GgmlType t);   // bytes per block
// Bytes of a tensor with these dims; throws if ne[0] is not a multiple of the block size.
uint64_t ggml_nbytes(GgmlType t, const std::vector<uint64_t>& ne);

// A metadata value. Scalars live in u (unsigned ints, bool), i (signed ints), f (floats) or s;
// arrays hold elements of one elem_type in arr (nested arrays are allowed by the spec).
struct GgufValue {
  GgufType type = GgufType::kUint32;
  GgufType elem_type = GgufType::kUint8;  // arrays only
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<GgufValue> arr;

  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue str(std::string v);
  static GgufValue array(GgufType elem, std::vector<GgufValue> items);
  static GgufValue strings(const std::vector<std::string>& v);
  static GgufValue f32s(const std::vector<float>& v);
  static GgufValue i32s(const std::vector<int32_t>& v);
};

// IEEE binary16 conversion, round to nearest even (what F16C and numpy do).
uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);
float bf16_to_fp32(uint16_t h);

// q8_0: blocks of 32 values as {fp16 d = amax/127, int8 qs[32] = round(x/d)}, 34 bytes.
constexpr size_t kQ8Block = 32;
constexpr size_t kQ8BlockBytes = 2 + kQ8Block;
// n must be a multiple of 32; writes n/32 blocks to out.
void quantize_q8_0(const float* x, size_t n, uint8_t* out);
void dequantize_q8_0(const uint8_t* blocks, size_t n, float* out);

}  // namespace ktl
