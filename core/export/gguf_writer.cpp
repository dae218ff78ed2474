#include "core/export/gguf_writer.h"

#include <cstring>
#include <stdexcept>

#include "core/base/atomic_file_writer.h"

namespace ktl {

namespace {

uint64_t pad_to(uint64_t n, uint64_t a) {
  return (n + a - 1) / a * a;
}

template <typename T>
void put(std::string& out, T v) {  // little-endian hosts only (x86-64, arm64)
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_value(std::string& out, const GgufValue& v, GgufType type) {
  switch (type) {
    case GgufType::kUint8:
      put<uint8_t>(out, uint8_t(v.u));
      break;
    case GgufType::kInt8:
      put<int8_t>(out, int8_t(v.i));
      break;
    case GgufType::kUint16:
      put<uint16_t>(out, uint16_t(v.u));
      break;
    case GgufType::kInt16:
      put<int16_t>(out, int16_t(v.i));
      break;
    case GgufType::kUint32:
      put<uint32_t>(out, uint32_t(v.u));
      break;
    case GgufType::kInt32:
      put<int32_t>(out, int32_t(v.i));
      break;
    case GgufType::kFloat32:
      put<float>(out, float(v.f));
      break;
    case GgufType::kBool:
      put<uint8_t>(out, v.u ? 1 : 0);
      break;
    case GgufType::kString:
      put_string(out, v.s);
      break;
    case GgufType::kUint64:
      put<uint64_t>(out, v.u);
      break;
    case GgufType::kInt64:
      put<int64_t>(out, v.i);
      break;
    case GgufType::kFloat64:
      put<double>(out, v.f);
      break;
    case GgufType::kArray:
      put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(out, v.arr.size());
      for (const auto& e : v.arr) put_value(out, e, v.elem_type);
      break;
  }
}

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)))
    throw std::invalid_argument("GGUF alignment must be a power of two");
  if (alignment != kGgufDefaultAlignment) set("general.alignment", GgufValue::u32(alignment));
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  if (key.empty()) throw std::invalid_argument("empty GGUF key");
  for (auto& [k, v] : kv_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> ne,
                            std::function<std::string()> bytes) {
  if (name.empty() || name.size() >= 64)  // ggml's GGML_MAX_NAME
    throw std::invalid_argument("GGUF tensor name must have 1..63 bytes: '" + name + "'");
  if (ne.empty() || ne.size() > 4)
    throw std::invalid_argument("tensor '" + name + "' needs 1-4 dims");
  for (const auto& t : tensors_)
    if (t.name == name) throw std::invalid_argument("duplicate tensor '" + name + "'");
  uint64_t nbytes;
  try {
    nbytes = ggml_nbytes(type, ne);
  } catch (const std::exception& e) {
    throw std::invalid_argument("tensor '" + name + "': " + e.what());
  }
  tensors_.push_back({name, type, std::move(ne), nbytes, std::move(bytes)});
}

uint64_t GgufWriter::write(const std::string& path) const {
  std::string head;
  put<uint32_t>(head, kGgufMagic);
  put<uint32_t>(head, kGgufVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size());
  for (const auto& [k, v] : kv_) {
    put_string(head, k);
    put<uint32_t>(head, static_cast<uint32_t>(v.type));
    put_value(head, v, v.type);
  }
  uint64_t offset = 0;  // relative to the data section; ggml requires these exact offsets
  for (const auto& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t d : t.ne) put<uint64_t>(head, d);
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset += pad_to(t.nbytes, alignment_);
  }
  head.append(pad_to(head.size(), alignment_) - head.size(), '\0');

  AtomicFileWriter w(path);
  w.write(head.data(), head.size());
  for (const auto& t : tensors_) {
    const std::string data = t.bytes();
    if (data.size() != t.nbytes)
      throw std::runtime_error("GGUF tensor '" + t.name + "' produced " +
                               std::to_string(data.size()) + " bytes, expected " +
                               std::to_string(t.nbytes));
    w.write(data.data(), data.size());
    w.write_zeros(pad_to(t.nbytes, alignment_) - t.nbytes);
  }
  w.commit();
  return w.bytes_written();
}

}  // namespace ktl
