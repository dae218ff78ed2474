#include "core/export/gguf_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ktl {

namespace {

// Bounds-checked little-endian cursor over the mapped file.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* p, uint64_t size)
      : path_(path), p_(p), size_(size) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("gguf " + path_ + ": " + what + " (at byte " + std::to_string(pos_) +
                             ")");
  }
  void need(uint64_t n, const char* what) const {
    if (n > size_ - pos_) fail(std::string("truncated while reading ") + what);
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    const uint64_t n = get<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }

 private:
  std::string path_;
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

GgufValue read_value(Cursor& c, uint32_t type, int depth) {
  if (type > static_cast<uint32_t>(GgufType::kFloat64))
    c.fail("unknown metadata value type " + std::to_string(type));
  GgufValue v;
  v.type = static_cast<GgufType>(type);
  switch (v.type) {
    case GgufType::kUint8:
      v.u = c.get<uint8_t>("uint8");
      break;
    case GgufType::kInt8:
      v.i = c.get<int8_t>("int8");
      break;
    case GgufType::kUint16:
      v.u = c.get<uint16_t>("uint16");
      break;
    case GgufType::kInt16:
      v.i = c.get<int16_t>("int16");
      break;
    case GgufType::kUint32:
      v.u = c.get<uint32_t>("uint32");
      break;
    case GgufType::kInt32:
      v.i = c.get<int32_t>("int32");
      break;
    case GgufType::kFloat32:
      v.f = c.get<float>("float32");
      break;
    case GgufType::kBool: {
      const uint8_t b = c.get<uint8_t>("bool");
      if (b > 1) c.fail("bool value " + std::to_string(b) + " is neither 0 nor 1");
      v.u = b;
      break;
    }
    case GgufType::kString:
      v.s = c.str("string");
      break;
    case GgufType::kUint64:
      v.u = c.get<uint64_t>("uint64");
      break;
    case GgufType::kInt64:
      v.i = c.get<int64_t>("int64");
      break;
    case GgufType::kFloat64:
      v.f = c.get<double>("float64");
      break;
    case GgufType::kArray: {
      if (depth > 4) c.fail("arrays nested too deeply");
      const uint32_t elem = c.get<uint32_t>("array type");
      const uint64_t n = c.get<uint64_t>("array length");
      if (n > c.left()) c.fail("array length " + std::to_string(n) + " exceeds the file");
      if (elem > static_cast<uint32_t>(GgufType::kFloat64))
        c.fail("unknown array element type " + std::to_string(elem));
      v.elem_type = static_cast<GgufType>(elem);
      v.arr.reserve(n);
      for (uint64_t i = 0; i < n; ++i) v.arr.push_back(read_value(c, elem, depth + 1));
      break;
    }
  }
  return v;
}

}  // namespace

uint64_t GgufTensorInfo::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : ne) n *= d;
  return n;
}

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("gguf " + path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size < 24) {
    ::close(fd);
    throw std::runtime_error("gguf " + path + ": file too small for a GGUF header");
  }
  f.size_ = static_cast<uint64_t>(st.st_size);
  void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw std::runtime_error("gguf " + path + ": cannot mmap");
  f.base_ = static_cast<const uint8_t*>(p);
  f.parse();  // a throw unmaps through the destructor
  return f;
}

void GgufFile::parse() {
  Cursor c(path_, base_, size_);
  if (c.get<uint32_t>("magic") != kGgufMagic) c.fail("bad magic (not a GGUF file)");
  version_ = c.get<uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    c.fail("unsupported GGUF version " + std::to_string(version_));
  const uint64_t n_tensors = c.get<uint64_t>("tensor count");
  const uint64_t n_kv = c.get<uint64_t>("metadata count");
  if (n_tensors > size_ / 8 || n_kv > size_ / 8) c.fail("implausible tensor or metadata count");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str("metadata key");
    if (find(key)) c.fail("duplicate metadata key '" + key + "'");
    const uint32_t type = c.get<uint32_t>("metadata type");
    kv_.emplace_back(std::move(key), read_value(c, type, 0));
  }
  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufType::kUint32) c.fail("general.alignment must be uint32");
    if (a->u == 0 || (a->u & (a->u - 1))) c.fail("general.alignment is not a power of two");
    alignment_ = static_cast<uint32_t>(a->u);
  }
  uint64_t expect = 0;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.str("tensor name");
    if (find_tensor(t.name)) c.fail("duplicate tensor '" + t.name + "'");
    const uint32_t n_dims = c.get<uint32_t>("tensor dims");
    if (n_dims < 1 || n_dims > 4)
      c.fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dims");
    for (uint32_t d = 0; d < n_dims; ++d) t.ne.push_back(c.get<uint64_t>("tensor dim"));
    const uint32_t type = c.get<uint32_t>("tensor type");
    if (!ggml_type_known(type))
      c.fail("tensor '" + t.name + "' has unsupported ggml type " + std::to_string(type));
    t.type = static_cast<GgmlType>(type);
    t.offset = c.get<uint64_t>("tensor offset");
    try {
      t.nbytes = ggml_nbytes(t.type, t.ne);
    } catch (const std::exception& e) {
      c.fail("tensor '" + t.name + "': " + e.what());
    }
    if (t.offset % alignment_) c.fail("tensor '" + t.name + "' offset is not aligned");
    if (t.offset != expect)
      c.fail("tensor '" + t.name + "' at offset " + std::to_string(t.offset) + ", expected " +
             std::to_string(expect));
    // Checked here, not only after the loop: keeps the offset sums below from wrapping.
    if (t.nbytes > size_ || expect > size_ - t.nbytes)
      c.fail("tensor '" + t.name + "' data runs past the end of the file (truncated?)");
    expect = t.offset + (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
    tensors_.push_back(std::move(t));
  }
  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  for (const auto& t : tensors_)
    if (data_offset_ + t.offset + t.nbytes > size_)
      c.fail("tensor '" + t.name + "' data runs past the end of the file (truncated?)");
}

GgufFile::GgufFile(GgufFile&& o) noexcept {
  *this = std::move(o);
}

GgufFile& GgufFile::operator=(GgufFile&& o) noexcept {
  if (this != &o) {
    if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
    path_ = std::move(o.path_);
    base_ = o.base_;
    size_ = o.size_;
    version_ = o.version_;
    alignment_ = o.alignment_;
    data_offset_ = o.data_offset_;
    kv_ = std::move(o.kv_);
    tensors_ = std::move(o.tensors_);
    o.base_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

GgufFile::~GgufFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [k, v] : kv_)
    if (k == key) return &v;
  return nullptr;
}

namespace {
const GgufValue& typed(const GgufFile& f, const std::string& path, const std::string& key,
                       GgufType type) {
  const GgufValue* v = f.find(key);
  if (!v) throw std::runtime_error("gguf " + path + ": missing key '" + key + "'");
  if (v->type != type)
    throw std::runtime_error("gguf " + path + ": key '" + key + "' is " + gguf_type_name(v->type) +
                             ", expected " + gguf_type_name(type));
  return *v;
}
}  // namespace

uint32_t GgufFile::get_u32(const std::string& key) const {
  return static_cast<uint32_t>(typed(*this, path_, key, GgufType::kUint32).u);
}
float GgufFile::get_f32(const std::string& key) const {
  return static_cast<float>(typed(*this, path_, key, GgufType::kFloat32).f);
}
bool GgufFile::get_bool(const std::string& key) const {
  return typed(*this, path_, key, GgufType::kBool).u != 0;
}
const std::string& GgufFile::get_string(const std::string& key) const {
  return typed(*this, path_, key, GgufType::kString).s;
}
const GgufValue& GgufFile::get_array(const std::string& key, GgufType elem) const {
  const GgufValue& v = typed(*this, path_, key, GgufType::kArray);
  if (v.elem_type != elem)
    throw std::runtime_error("gguf " + path_ + ": array '" + key + "' holds " +
                             gguf_type_name(v.elem_type) + ", expected " + gguf_type_name(elem));
  return v;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<float> GgufFile::to_f32(const GgufTensorInfo& t) const {
  const uint64_t n = t.n_elements();
  std::vector<float> out(n);
  const uint8_t* p = data(t);
  switch (t.type) {
    case GgmlType::kF32:
      if (n) std::memcpy(out.data(), p, n * 4);  // an empty vector's data() may be null
      break;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      for (uint64_t i = 0; i < n; ++i) {
        const uint16_t h = uint16_t(p[2 * i] | (p[2 * i + 1] << 8));
        out[i] = t.type == GgmlType::kF16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
      }
      break;
    case GgmlType::kQ8_0:
      dequantize_q8_0(p, n, out.data());
      break;
  }
  return out;
}

}  // namespace ktl
