#include "core/export/gguf_format.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace ktl {

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                "int32",  "float32", "bool",   "string", "array",
                                "uint64", "int64",   "float64"};
  auto i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "?";
}

const char* ggml_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::kF32:
      return "f32";
    case GgmlType::kF16:
      return "f16";
    case GgmlType::kQ8_0:
      return "q8_0";
    case GgmlType::kBF16:
      return "bf16";
  }
  return "?";
}

bool ggml_type_known(uint32_t t) {
  return t == 0 || t == 1 || t == 8 || t == 30;
}

size_t ggml_block_size(GgmlType t) {
  return t == GgmlType::kQ8_0 ? kQ8Block : 1;
}

size_t ggml_type_size(GgmlType t) {
  switch (t) {
    case GgmlType::kF32:
      return 4;
    case GgmlType::kF16:
      return 2;
    case GgmlType::kBF16:
      return 2;
    case GgmlType::kQ8_0:
      return kQ8BlockBytes;
  }
  return 0;
}

uint64_t ggml_nbytes(GgmlType t, const std::vector<uint64_t>& ne) {
  if (ne.empty()) return ggml_type_size(t);
  const uint64_t bs = ggml_block_size(t);
  if (ne[0] % bs != 0)
    throw std::runtime_error(std::string(ggml_type_name(t)) + " needs rows of a multiple of " +
                             std::to_string(bs) + " elements, got " + std::to_string(ne[0]));
  uint64_t n = ne[0] / bs;
  if (n > UINT64_MAX / ggml_type_size(t)) throw std::runtime_error("tensor size overflows");
  n *= ggml_type_size(t);
  for (size_t i = 1; i < ne.size(); ++i) {
    if (ne[i] != 0 && n > UINT64_MAX / ne[i]) throw std::runtime_error("tensor size overflows");
    n *= ne[i];
  }
  return n;
}

GgufValue GgufValue::u32(uint32_t v) {
  GgufValue x;
  x.type = GgufType::kUint32;
  x.u = v;
  return x;
}
GgufValue GgufValue::i32(int32_t v) {
  GgufValue x;
  x.type = GgufType::kInt32;
  x.i = v;
  return x;
}
GgufValue GgufValue::u64(uint64_t v) {
  GgufValue x;
  x.type = GgufType::kUint64;
  x.u = v;
  return x;
}
GgufValue GgufValue::f32(float v) {
  GgufValue x;
  x.type = GgufType::kFloat32;
  x.f = v;
  return x;
}
GgufValue GgufValue::boolean(bool v) {
  GgufValue x;
  x.type = GgufType::kBool;
  x.u = v ? 1 : 0;
  return x;
}
GgufValue GgufValue::str(std::string v) {
  GgufValue x;
  x.type = GgufType::kString;
  x.s = std::move(v);
  return x;
}
GgufValue GgufValue::array(GgufType elem, std::vector<GgufValue> items) {
  GgufValue x;
  x.type = GgufType::kArray;
  x.elem_type = elem;
  for (const auto& it : items)
    if (it.type != elem) throw std::runtime_error("GGUF array elements must share one type");
  x.arr = std::move(items);
  return x;
}
GgufValue GgufValue::strings(const std::vector<std::string>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (const auto& s : v) items.push_back(str(s));
  return array(GgufType::kString, std::move(items));
}
GgufValue GgufValue::f32s(const std::vector<float>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (float f : v) items.push_back(f32(f));
  return array(GgufType::kFloat32, std::move(items));
}
GgufValue GgufValue::i32s(const std::vector<int32_t>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (int32_t i : v) items.push_back(i32(i));
  return array(GgufType::kInt32, std::move(items));
}

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t exp = (x >> 23) & 0xff;
  uint32_t mant = x & 0x7fffff;
  if (exp == 0xff) return uint16_t(sign | 0x7c00 | (mant ? 0x200 : 0));  // inf / nan
  const int e = int(exp) - 127 + 15;
  if (e >= 31) return uint16_t(sign | 0x7c00);  // overflow: inf
  if (e <= 0) {                                 // half subnormal (or zero)
    if (e < -10) return uint16_t(sign);
    mant |= 0x800000;
    const int shift = 14 - e;
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (h & 1))) ++h;
    return uint16_t(sign | h);
  }
  uint32_t h = (uint32_t(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // a carry rolls into the exponent
  return uint16_t(sign | h);
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t x;
  if (exp == 0x1f) {
    x = sign | 0x7f800000 | (mant << 13);
  } else if (exp != 0) {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    x = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while (!(mant & 0x400));
    x = sign | (uint32_t(112 - e) << 23) | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

float bf16_to_fp32(uint16_t h) {
  uint32_t x = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

void quantize_q8_0(const float* x, size_t n, uint8_t* out) {
  if (n % kQ8Block) throw std::runtime_error("q8_0 needs a multiple of 32 values");
  for (size_t b = 0; b < n / kQ8Block; ++b, x += kQ8Block, out += kQ8BlockBytes) {
    float amax = 0;
    for (size_t j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    const uint16_t dh = fp32_to_fp16(d);
    out[0] = uint8_t(dh & 0xff);
    out[1] = uint8_t(dh >> 8);
    for (size_t j = 0; j < kQ8Block; ++j)
      out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[j] * id)));
  }
}

void dequantize_q8_0(const uint8_t* blocks, size_t n, float* out) {
  for (size_t b = 0; b < n / kQ8Block; ++b, blocks += kQ8BlockBytes) {
    const float d = fp16_to_fp32(uint16_t(blocks[0] | (blocks[1] << 8)));
    for (size_t j = 0; j < kQ8Block; ++j)
      *out++ = d * static_cast<float>(static_cast<int8_t>(blocks[2 + j]));
  }
}

}  // namespace ktl
