// Streams a file to "<path>.tmp-<pid>" and renames it into place on commit(), so readers see
// the old file or the complete new one, never half of one. Without commit() (an exception, a
// full disk) the temporary file is removed and any previous file at `path` is untouched.
// Thread-safety: one writer per object; distinct objects may write distinct paths concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ktl {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);  // throws if the temp file can't be made
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n);  // throws naming the path on I/O errors
  void write_zeros(size_t n);
  uint64_t bytes_written() const { return written_; }
  void commit();  // fsync, rename into place, fsync the directory

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
  uint64_t written_ = 0;
};

}  // namespace ktl
