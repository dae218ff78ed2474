// Helpers for the data pipeline tests: a self-removing temp dir and compressed-file writers.
#pragma once

#include <bzlib.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace ktl::testing {

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> n{0};
    path_ = std::filesystem::temp_directory_path() /
            ("ktl_data_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_text(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline void write_gzip(const std::string& path, const std::string& data) {
  gzFile g = gzopen(path.c_str(), "wb");
  gzwrite(g, data.data(), static_cast<unsigned>(data.size()));
  gzclose(g);
}

// bzip2 bytes of `data` (one stream).
inline std::string bzip2_bytes(const std::string& data) {
  unsigned int cap = static_cast<unsigned int>(data.size() * 1.02 + 700);
  std::string out(cap, '\0');
  std::string in = data;
  if (BZ2_bzBuffToBuffCompress(&out[0], &cap, &in[0], static_cast<unsigned>(in.size()), 9, 0, 0) !=
      BZ_OK)
    throw std::runtime_error("bzip2 compression failed");
  out.resize(cap);
  return out;
}

}  // namespace ktl::testing
