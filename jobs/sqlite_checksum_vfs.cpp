#include "jobs/sqlite_checksum_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace ktl::jobs {

namespace {

constexpr const char* kVfsName = "ktl-checksum";
constexpr char kMagic[16] = "SQLite format 3";  // with its terminating NUL: 16 bytes

// Our part of an open file; the wrapped VFS's file follows it (kOwnSize bytes in).
struct CkFile {
  sqlite3_file base;
  const char* name;
  bool checksums;  // main database file whose header says 8 reserved bytes
};
constexpr size_t kOwnSize = (sizeof(CkFile) + 15) / 16 * 16;

sqlite3_file* inner(sqlite3_file* f) {
  return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kOwnSize);
}
CkFile* own(sqlite3_file* f) {
  return reinterpret_cast<CkFile*>(f);
}
sqlite3_vfs* inner_vfs(sqlite3_vfs* v) {
  return static_cast<sqlite3_vfs*>(v->pAppData);
}

bool is_page_size(int n) {
  return n >= 512 && n <= 65536 && (n & (n - 1)) == 0;
}

// Page 1 passing through (read or written) tells whether the file has the reserve.
void note_header(CkFile* p, const void* buf, int amt, sqlite3_int64 off) {
  if (off != 0 || amt < 100 || std::memcmp(buf, kMagic, 16) != 0) return;
  p->checksums = static_cast<const unsigned char*>(buf)[20] == kPageChecksumBytes;
}

int ck_read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  sqlite3_file* in = inner(f);
  const int rc = in->pMethods->xRead(in, buf, amt, off);
  if (rc != SQLITE_OK) return rc;  // a short read of a page never written is not checked
  CkFile* p = own(f);
  note_header(p, buf, amt, off);
  if (!p->checksums || !is_page_size(amt)) return rc;
  unsigned char sum[8];
  const auto* page = static_cast<const unsigned char*>(buf);
  page_checksum(page, static_cast<size_t>(amt), sum);
  if (std::memcmp(sum, page + amt - 8, 8) == 0) return rc;
  sqlite3_log(SQLITE_IOERR_DATA, "page checksum mismatch at offset %lld of %s",
              static_cast<long long>(off), p->name ? p->name : "?");
  return SQLITE_IOERR_DATA;
}

int ck_write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  CkFile* p = own(f);
  note_header(p, buf, amt, off);
  // The reserved bytes are ours: SQLite never reads them, so writing into its buffer is safe
  // (only for the main file: a WAL frame's bytes are covered by SQLite's frame checksum).
  if (p->checksums && is_page_size(amt)) {
    auto* page = static_cast<unsigned char*>(const_cast<void*>(buf));
    page_checksum(page, static_cast<size_t>(amt), page + amt - 8);
  }
  sqlite3_file* in = inner(f);
  return in->pMethods->xWrite(in, buf, amt, off);
}

int ck_close(sqlite3_file* f) {
  sqlite3_file* in = inner(f);
  return in->pMethods->xClose(in);
}

// Memory-mapped pages would bypass xRead and its check: never hand them out.
int ck_fetch(sqlite3_file* f, sqlite3_int64 off, int amt, void** pp) {
  if (own(f)->checksums) {
    *pp = nullptr;
    return SQLITE_OK;
  }
  sqlite3_file* in = inner(f);
  return in->pMethods->xFetch(in, off, amt, pp);
}

// Everything else goes straight to the wrapped file.
#define KTL_FWD(name, ...) inner(f)->pMethods->name(inner(f), ##__VA_ARGS__)
const sqlite3_io_methods kMethods = {
    3,
    ck_close,
    ck_read,
    ck_write,
    [](sqlite3_file* f, sqlite3_int64 size) { return KTL_FWD(xTruncate, size); },
    [](sqlite3_file* f, int flags) { return KTL_FWD(xSync, flags); },
    [](sqlite3_file* f, sqlite3_int64* size) { return KTL_FWD(xFileSize, size); },
    [](sqlite3_file* f, int lock) { return KTL_FWD(xLock, lock); },
    [](sqlite3_file* f, int lock) { return KTL_FWD(xUnlock, lock); },
    [](sqlite3_file* f, int* out) { return KTL_FWD(xCheckReservedLock, out); },
    [](sqlite3_file* f, int op, void* arg) { return KTL_FWD(xFileControl, op, arg); },
    [](sqlite3_file* f) { return KTL_FWD(xSectorSize); },
    [](sqlite3_file* f) { return KTL_FWD(xDeviceCharacteristics); },
    [](sqlite3_file* f, int pg, int size, int extend, void volatile** pp) {
      return KTL_FWD(xShmMap, pg, size, extend, pp);
    },
    [](sqlite3_file* f, int offset, int n, int flags) {
      return KTL_FWD(xShmLock, offset, n, flags);
    },
    [](sqlite3_file* f) { KTL_FWD(xShmBarrier); },
    [](sqlite3_file* f, int del) { return KTL_FWD(xShmUnmap, del); },
    ck_fetch,
    [](sqlite3_file* f, sqlite3_int64 off, void* p) { return KTL_FWD(xUnfetch, off, p); },
};
#undef KTL_FWD

int ck_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  sqlite3_vfs* in = inner_vfs(vfs);
  // Journals, WAL files, temp files: the wrapped VFS alone (its file fills our whole slot).
  if (!(flags & SQLITE_OPEN_MAIN_DB)) return in->xOpen(in, name, f, flags, out_flags);
  CkFile* p = own(f);
  std::memset(p, 0, sizeof(CkFile));
  const int rc = in->xOpen(in, name, inner(f), flags, out_flags);
  if (rc != SQLITE_OK) return rc;  // base.pMethods stays null: SQLite will not close it
  p->name = name;
  p->base.pMethods = &kMethods;
  return SQLITE_OK;
}

sqlite3_vfs make_vfs(sqlite3_vfs* in) {
  sqlite3_vfs v{};
  v.iVersion = std::min(in->iVersion, 3);
  v.szOsFile = static_cast<int>(kOwnSize) + in->szOsFile;
  v.mxPathname = in->mxPathname;
  v.zName = kVfsName;
  v.pAppData = in;
  v.xOpen = ck_open;
  // The rest forwards to the wrapped VFS (pAppData).
  v.xDelete = [](sqlite3_vfs* s, const char* n, int d) {
    return inner_vfs(s)->xDelete(inner_vfs(s), n, d);
  };
  v.xAccess = [](sqlite3_vfs* s, const char* n, int fl, int* o) {
    return inner_vfs(s)->xAccess(inner_vfs(s), n, fl, o);
  };
  v.xFullPathname = [](sqlite3_vfs* s, const char* n, int sz, char* o) {
    return inner_vfs(s)->xFullPathname(inner_vfs(s), n, sz, o);
  };
  v.xDlOpen = [](sqlite3_vfs* s, const char* n) { return inner_vfs(s)->xDlOpen(inner_vfs(s), n); };
  v.xDlError = [](sqlite3_vfs* s, int n, char* o) { inner_vfs(s)->xDlError(inner_vfs(s), n, o); };
  v.xDlSym = [](sqlite3_vfs* s, void* h, const char* n) {
    return inner_vfs(s)->xDlSym(inner_vfs(s), h, n);
  };
  v.xDlClose = [](sqlite3_vfs* s, void* h) { inner_vfs(s)->xDlClose(inner_vfs(s), h); };
  v.xRandomness = [](sqlite3_vfs* s, int n, char* o) {
    return inner_vfs(s)->xRandomness(inner_vfs(s), n, o);
  };
  v.xSleep = [](sqlite3_vfs* s, int us) { return inner_vfs(s)->xSleep(inner_vfs(s), us); };
  v.xCurrentTime = [](sqlite3_vfs* s, double* t) {
    return inner_vfs(s)->xCurrentTime(inner_vfs(s), t);
  };
  v.xGetLastError = [](sqlite3_vfs* s, int n, char* o) {
    return inner_vfs(s)->xGetLastError(inner_vfs(s), n, o);
  };
  v.xCurrentTimeInt64 = [](sqlite3_vfs* s, sqlite3_int64* t) {
    return inner_vfs(s)->xCurrentTimeInt64(inner_vfs(s), t);
  };
  v.xSetSystemCall = [](sqlite3_vfs* s, const char* n, sqlite3_syscall_ptr p) {
    return inner_vfs(s)->xSetSystemCall(inner_vfs(s), n, p);
  };
  v.xGetSystemCall = [](sqlite3_vfs* s, const char* n) {
    return inner_vfs(s)->xGetSystemCall(inner_vfs(s), n);
  };
  v.xNextSystemCall = [](sqlite3_vfs* s, const char* n) {
    return inner_vfs(s)->xNextSystemCall(inner_vfs(s), n);
  };
  return v;
}

uint32_t load_le32(const unsigned char* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

void store_le32(uint32_t v, unsigned char* p) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

// A whole file descriptor, closed on scope exit.
struct Fd {
  explicit Fd(const std::string& path, int flags) : fd(::open(path.c_str(), flags | O_CLOEXEC)) {
    if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  }
  ~Fd() { ::close(fd); }
  int fd;
};

bool read_at(int fd, unsigned char* buf, size_t n, off_t off) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, buf + got, n - got, off + static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

// Calls visit(page_number, page) for every whole page of a database with checksums.
template <typename Visit>
void for_each_page(const std::string& path, int flags, Visit visit) {
  const DbFileHeader h = read_db_header(path);
  if (!h.is_database || h.reserved_bytes != kPageChecksumBytes) return;
  Fd f(path, flags);
  std::vector<unsigned char> page(h.page_size);
  for (int64_t pgno = 1;; ++pgno) {
    const off_t off = static_cast<off_t>(pgno - 1) * h.page_size;
    if (!read_at(f.fd, page.data(), page.size(), off)) break;
    visit(f.fd, pgno, off, page);
  }
}

}  // namespace

const char* checksum_vfs_name() {
  static std::once_flag once;
  static sqlite3_vfs vfs;
  static int rc = SQLITE_OK;
  std::call_once(once, [] {
    sqlite3_vfs* in = sqlite3_vfs_find(nullptr);
    if (!in) {
      rc = SQLITE_ERROR;
      return;
    }
    vfs = make_vfs(in);
    rc = sqlite3_vfs_register(&vfs, /*makeDflt=*/0);
  });
  if (rc != SQLITE_OK)
    throw std::runtime_error(std::string("cannot register the SQLite checksum VFS: ") +
                             sqlite3_errstr(rc));
  return kVfsName;
}

// SQLite's WAL checksum over 32-bit little-endian words, two at a time (cksumvfs uses the
// same, so either can read the other's files). Any single changed word changes the result.
void page_checksum(const unsigned char* page, size_t n, unsigned char out[8]) {
  uint32_t s1 = 0, s2 = 0;
  for (size_t i = 0; i + 8 <= n - 8; i += 8) {
    s1 += load_le32(page + i) + s2;
    s2 += load_le32(page + i + 4) + s1;
  }
  store_le32(s1, out);
  store_le32(s2, out + 4);
}

DbFileHeader read_db_header(const std::string& path) {
  Fd f(path, O_RDONLY);
  unsigned char h[100];
  DbFileHeader out;
  if (!read_at(f.fd, h, sizeof(h), 0) || std::memcmp(h, kMagic, 16) != 0) return out;
  out.is_database = true;
  const uint32_t size = uint32_t(h[16]) << 8 | h[17];
  out.page_size = size == 1 ? 65536 : size;  // 1 encodes 65536
  out.reserved_bytes = h[20];
  return out;
}

void stamp_page_checksums(const std::string& path) {
  for_each_page(path, O_RDWR, [&](int fd, int64_t, off_t off, std::vector<unsigned char>& page) {
    unsigned char sum[8];
    page_checksum(page.data(), page.size(), sum);
    if (::pwrite(fd, sum, 8, off + static_cast<off_t>(page.size()) - 8) != 8)
      throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  });
  Fd f(path, O_RDWR);
  if (::fsync(f.fd) != 0)
    throw std::runtime_error("cannot sync " + path + ": " + std::strerror(errno));
}

std::vector<int64_t> find_bad_page_checksums(const std::string& path) {
  std::vector<int64_t> bad;
  for_each_page(path, O_RDONLY, [&](int, int64_t pgno, off_t, std::vector<unsigned char>& page) {
    unsigned char sum[8];
    page_checksum(page.data(), page.size(), sum);
    if (std::memcmp(sum, page.data() + page.size() - 8, 8) != 0) bad.push_back(pgno);
  });
  return bad;
}

}  // namespace ktl::jobs
