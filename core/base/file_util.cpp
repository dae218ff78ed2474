#include "core/base/file_util.h"

#include "core/base/atomic_file_writer.h"
#include "core/base/sha256.h"

#include <fcntl.h>
#include <unistd.h>

#ifdef __APPLE__
#include <mach-o/dyld.h>
#endif

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace ktl {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string() + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read " + path.string());
  return ss.str();
}

std::string executable_path() {
#ifdef __APPLE__
  char buf[4096];
  uint32_t size = sizeof(buf);
  if (_NSGetExecutablePath(buf, &size) != 0) return "";
  std::error_code ec;
  auto p = fs::canonical(buf, ec);
  return ec ? std::string(buf) : p.string();
#else
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "" : p.string();
#endif
}

void fsync_dir(const fs::path& dir) {
  const std::string path = dir.empty() ? "." : dir.string();
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open directory " + path + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some filesystems cannot sync a directory (EINVAL); anything else means the renames in it
  // may not survive a power cut, so the caller must not report success.
  if (rc != 0 && err != EINVAL && err != EROFS)
    throw std::runtime_error("cannot sync directory " + path + ": " + std::strerror(err));
}

void fsync_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path.string() + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(err));
}

void write_file_atomic(const fs::path& path, std::string_view data) {
  AtomicFileWriter w(path.string());
  w.write(data.data(), data.size());
  w.commit();
}

std::string sha256_hex(std::string_view data) {
  Sha256 s;
  s.update(data.data(), data.size());
  return s.hex_digest();
}

std::string sha256_file_hex(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path.string() + ": " + std::strerror(errno));
  Sha256 s;
  std::vector<char> buf(1 << 20);  // 1 MiB reads: fewer syscalls, stays in L2
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(err));
    }
    s.update(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return s.hex_digest();
}

}  // namespace ktl
