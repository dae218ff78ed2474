#include "core/safetensors/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/base/atomic_file_writer.h"

namespace ktl {

namespace {

// The Hugging Face reader refuses headers above 100 MB; so do we (a corrupt length field
// must not make us allocate gigabytes).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeEntry {
  StDtype dtype;
  const char* name;
  size_t size;
};
constexpr DtypeEntry kDtypes[] = {{StDtype::F32, "F32", 4},   {StDtype::F16, "F16", 2},
                                  {StDtype::BF16, "BF16", 2}, {StDtype::I8, "I8", 1},
                                  {StDtype::U8, "U8", 1},     {StDtype::I32, "I32", 4},
                                  {StDtype::I64, "I64", 8}};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("safetensors " + path + ": " + what);
}

// Byte count of a tensor; throws on negative dims or overflow.
size_t checked_nbytes(const std::vector<int64_t>& shape, StDtype dtype, const std::string& path,
                      const std::string& name) {
  uint64_t n = st_dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) fail(path, "tensor '" + name + "' has a negative dimension");
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d))
      fail(path, "tensor '" + name + "' size overflows");
    n *= static_cast<uint64_t>(d);
  }
  return static_cast<size_t>(n);
}

StTensorInfo parse_entry(const std::string& path, const std::string& name,
                         const nlohmann::json& v) {
  if (name.empty()) fail(path, "empty tensor name");
  if (!v.is_object()) fail(path, "entry '" + name + "' is not an object");
  auto dt = v.find("dtype");
  auto sh = v.find("shape");
  auto off = v.find("data_offsets");
  if (dt == v.end() || !dt->is_string()) fail(path, "tensor '" + name + "' has no string dtype");
  if (sh == v.end() || !sh->is_array()) fail(path, "tensor '" + name + "' has no shape array");
  if (off == v.end() || !off->is_array() || off->size() != 2)
    fail(path, "tensor '" + name + "' needs data_offsets [begin, end]");
  StTensorInfo t;
  t.name = name;
  try {
    t.dtype = st_dtype_from_name(dt->get<std::string>());
  } catch (const std::exception& e) {
    fail(path, "tensor '" + name + "': " + e.what());
  }
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned()) fail(path, "tensor '" + name + "' shape has a non-integer");
    t.shape.push_back(d.get<int64_t>());
  }
  for (const auto& o : *off)
    if (!o.is_number_unsigned()) fail(path, "tensor '" + name + "' data_offsets not integers");
  const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  if (end < begin) fail(path, "tensor '" + name + "' has end < begin in data_offsets");
  t.offset = static_cast<size_t>(begin);
  t.nbytes = static_cast<size_t>(end - begin);
  const size_t expect = checked_nbytes(t.shape, t.dtype, path, name);
  if (t.nbytes != expect)
    fail(path, "tensor '" + name + "' has " + std::to_string(t.nbytes) +
                   " bytes but its shape and " + "dtype need " + std::to_string(expect));
  return t;
}

// Offsets must tile the data section exactly, like the Hugging Face reader requires:
// sorted by begin, each starting where the previous ended, the last ending at the file's end.
void check_layout(const std::string& path, std::vector<StTensorInfo>& ts, size_t data_size) {
  std::sort(ts.begin(), ts.end(),
            [](const StTensorInfo& a, const StTensorInfo& b) {  // empty tensors first on ties
              return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
            });
  size_t pos = 0;
  for (const auto& t : ts) {
    if (t.offset < pos) fail(path, "tensor '" + t.name + "' overlaps the previous tensor");
    if (t.offset > pos) fail(path, "gap before tensor '" + t.name + "' in the data section");
    if (t.nbytes > data_size - pos)
      fail(path, "tensor '" + t.name + "' runs past the end of the file (truncated?)");
    pos += t.nbytes;
  }
  if (pos != data_size)
    fail(path, "data section has " + std::to_string(data_size - pos) + " trailing bytes");
}

}  // namespace

const char* st_dtype_name(StDtype d) {
  for (const auto& e : kDtypes)
    if (e.dtype == d) return e.name;
  return "?";
}

size_t st_dtype_size(StDtype d) {
  for (const auto& e : kDtypes)
    if (e.dtype == d) return e.size;
  return 0;
}

StDtype st_dtype_from_name(const std::string& name) {
  for (const auto& e : kDtypes)
    if (name == e.name) return e.dtype;
  throw std::runtime_error("unknown dtype '" + name + "'");
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, "cannot stat");
  }
  f.size_ = static_cast<size_t>(st.st_size);
  if (f.size_ < 8) {
    ::close(fd);
    fail(path,
         "file is " + std::to_string(f.size_) + " bytes, too small for a header (truncated?)");
  }
  void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) fail(path, std::string("cannot mmap: ") + std::strerror(errno));
  f.base_ = static_cast<const uint8_t*>(p);

  // From here on `f` owns the mapping; a throw unmaps it through the destructor.
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | f.base_[i];
  if (hlen > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(hlen) + " is implausible");
  if (hlen > f.size_ - 8)
    fail(path, "header length " + std::to_string(hlen) + " exceeds the file size " +
                   std::to_string(f.size_) + " (truncated?)");
  f.data_start_ = 8 + static_cast<size_t>(hlen);

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(f.base_ + 8, f.base_ + f.data_start_);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(path, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(path, "__metadata__ value '" + m.key() + "' is not a string");
        f.metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    f.tensors_.push_back(parse_entry(path, it.key(), *it));
  }
  check_layout(path, f.tensors_, f.size_ - f.data_start_);
  return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept {
  *this = std::move(o);
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
    path_ = std::move(o.path_);
    base_ = o.base_;
    size_ = o.size_;
    data_start_ = o.data_start_;
    tensors_ = std::move(o.tensors_);
    metadata_ = std::move(o.metadata_);
    o.base_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const StTensorInfo* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void write_safetensors(const std::string& path, const std::vector<StTensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Widest dtypes first (stable), so every tensor starts at a multiple of its element size
  // while offsets stay contiguous, as the Hugging Face reader requires.
  std::vector<const StTensorView*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const StTensorView* a, const StTensorView* b) {
    return st_dtype_size(a->dtype) > st_dtype_size(b->dtype);
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  size_t pos = 0;
  for (const StTensorView* t : order) {
    if (t->name.empty() || t->name == "__metadata__")
      fail(path, "invalid tensor name '" + t->name + "'");
    if (header.contains(t->name)) fail(path, "duplicate tensor name '" + t->name + "'");
    const size_t expect = checked_nbytes(t->shape, t->dtype, path, t->name);
    if (t->nbytes != expect)
      fail(path, "tensor '" + t->name + "' has " + std::to_string(t->nbytes) +
                     " bytes but its shape and dtype need " + std::to_string(expect));
    if (t->nbytes > 0 && t->data == nullptr) fail(path, "tensor '" + t->name + "' has no data");
    header[t->name] = {{"dtype", st_dtype_name(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {pos, pos + t->nbytes}}};
    pos += t->nbytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data section starts 8-byte aligned
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t(h.size()) >> (8 * i));

  AtomicFileWriter w(path);
  w.write(len, 8);
  w.write(h.data(), h.size());
  for (const StTensorView* t : order) w.write(t->data, t->nbytes);
  w.commit();
}

}  // namespace ktl
