// Fault injection for tests: preload this library (LD_PRELOAD) and the N-th write-side file
// operation on a chosen path fails with ENOSPC or EIO, or the process is killed at it, as a
// full disk, a failing disk or a power cut would do. SQLite's own I/O-error and crash tests
// work the same way (a failure at every write in turn).
//
// Counted operations ("ops"), each on a path that contains KTL_FAULT_PATH:
//   open   open/openat/creat for writing (O_WRONLY, O_RDWR or O_CREAT), and mkdir
//   write  write, pwrite, pwritev, writev, ftruncate (the fd's path from /proc/self/fd)
//   fsync  fsync, fdatasync
//   rename rename, renameat, renameat2 (either path matches)
// Environment (read once, at load):
//   KTL_FAULT_PATH   substring a path must contain to count; unset = the library does nothing
//   KTL_FAULT_OPS    comma list of the ops above to count (default: all four)
//   KTL_FAULT_AT     1-based index of the counted op that fails; 0 or unset = count only
//   KTL_FAULT_ERROR  ENOSPC (default), EIO, kill (SIGKILL before the op runs: it never happens)
//                    or kill-after (SIGKILL once the op has run)
//   KTL_FAULT_STICKY 1 = every counted op from KTL_FAULT_AT on fails (a disk that stays full)
//   KTL_FAULT_LOG    file to append "<index> <op> <path>\n" to for every counted op
// In-process control (tests that preload the library into themselves): ktl_fault_arm(),
// ktl_fault_count(), found with dlsym(RTLD_DEFAULT, ...).
// Thread-safety: the counter is atomic; arming while other threads write is racy by design
// (tests arm, act, disarm).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { kOpOpen = 1, kOpWrite = 2, kOpFsync = 4, kOpRename = 8 };

static char g_path[1024];
static int g_ops = kOpOpen | kOpWrite | kOpFsync | kOpRename;
static long g_at = 0;
static int g_error = ENOSPC;  // or -1: kill before, -2: kill after
static int g_sticky = 0;
static char g_log[1024];
static long g_count = 0;

static void read_env(void) __attribute__((constructor));
static void read_env(void) {
  const char* p = getenv("KTL_FAULT_PATH");
  if (!p || !*p) return;
  snprintf(g_path, sizeof g_path, "%s", p);
  const char* ops = getenv("KTL_FAULT_OPS");
  if (ops && *ops) {
    g_ops = 0;
    if (strstr(ops, "open")) g_ops |= kOpOpen;
    if (strstr(ops, "write")) g_ops |= kOpWrite;
    if (strstr(ops, "fsync")) g_ops |= kOpFsync;
    if (strstr(ops, "rename")) g_ops |= kOpRename;
  }
  const char* at = getenv("KTL_FAULT_AT");
  g_at = at ? atol(at) : 0;
  const char* e = getenv("KTL_FAULT_ERROR");
  if (e && strcmp(e, "EIO") == 0) g_error = EIO;
  if (e && strcmp(e, "kill") == 0) g_error = -1;
  if (e && strcmp(e, "kill-after") == 0) g_error = -2;
  const char* s = getenv("KTL_FAULT_STICKY");
  g_sticky = s && *s == '1';
  const char* log = getenv("KTL_FAULT_LOG");
  if (log) snprintf(g_log, sizeof g_log, "%s", log);
}

static void* real(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (!f) abort();
  return f;
}
// The next definition of `name` (libc's), typed like our own.
#define REAL(name)                         \
  static __typeof__(&name) real_##name;    \
  if (!real_##name) real_##name = (__typeof__(&name))real(#name)

static void kill_self(void) { syscall(SYS_kill, getpid(), SIGKILL); }

static void log_op(long index, const char* op, const char* path) {
  if (!g_log[0]) return;
  char line[1200];
  int n = snprintf(line, sizeof line, "%ld %s %s\n", index, op, path);
  int fd = (int)syscall(SYS_openat, AT_FDCWD, g_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (syscall(SYS_write, fd, line, (size_t)n) < 0) {
  }
  syscall(SYS_close, fd);
}

// 0: run the op; > 0: fail it with that errno; -2: run it, then die (see after()).
static int decide(int op, const char* opname, const char* path, const char* path2) {
  if (!g_path[0] || !(g_ops & op)) return 0;
  if (!(path && strstr(path, g_path)) && !(path2 && strstr(path2, g_path))) return 0;
  long index = __atomic_add_fetch(&g_count, 1, __ATOMIC_SEQ_CST);
  log_op(index, opname, path && strstr(path, g_path) ? path : path2);
  if (g_at <= 0 || index < g_at || (index > g_at && !g_sticky)) return 0;
  if (g_error == -1) kill_self();
  if (g_error == -2) return -2;
  return g_error;
}

static int fd_path(int fd, char* buf, size_t size) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, buf, size - 1);
  if (n < 0) return 0;
  buf[n] = 0;
  return 1;
}

static int decide_fd(int op, const char* opname, int fd) {
  if (!g_path[0] || !(g_ops & op)) return 0;
  char path[1024];
  if (!fd_path(fd, path, sizeof path)) return 0;
  return decide(op, opname, path, NULL);
}

// Fails with `err` (returning `fail`) or runs `call`, dying after it for kill-after.
#define FAULT_OR(decision, fail, call)  \
  do {                                  \
    int d_ = (decision);                \
    if (d_ > 0) {                       \
      errno = d_;                       \
      return fail;                      \
    }                                   \
    __typeof__(call) r_ = (call);       \
    if (d_ == -2) kill_self();          \
    return r_;                          \
  } while (0)

static int writes(int flags) { return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0; }

// ---- open ----
static mode_t mode_arg(int flags, va_list ap) {
  return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char* path, int flags, ...) {
  REAL(open);
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  FAULT_OR(writes(flags) ? decide(kOpOpen, "open", path, NULL) : 0, -1,
           real_open(path, flags, mode));
}

int open64(const char* path, int flags, ...) {
  REAL(open64);
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  FAULT_OR(writes(flags) ? decide(kOpOpen, "open", path, NULL) : 0, -1,
           real_open64(path, flags, mode));
}

int openat(int dirfd, const char* path, int flags, ...) {
  REAL(openat);
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  FAULT_OR(writes(flags) ? decide(kOpOpen, "open", path, NULL) : 0, -1,
           real_openat(dirfd, path, flags, mode));
}

int openat64(int dirfd, const char* path, int flags, ...) {
  REAL(openat64);
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  FAULT_OR(writes(flags) ? decide(kOpOpen, "open", path, NULL) : 0, -1,
           real_openat64(dirfd, path, flags, mode));
}

int creat(const char* path, mode_t mode) {
  return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int mkdir(const char* path, mode_t mode) {
  REAL(mkdir);
  FAULT_OR(decide(kOpOpen, "mkdir", path, NULL), -1, real_mkdir(path, mode));
}

// ---- write ----
ssize_t write(int fd, const void* buf, size_t n) {
  REAL(write);
  FAULT_OR(decide_fd(kOpWrite, "write", fd), (ssize_t)-1, real_write(fd, buf, n));
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  REAL(pwrite);
  FAULT_OR(decide_fd(kOpWrite, "write", fd), (ssize_t)-1, real_pwrite(fd, buf, n, off));
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t off) {
  REAL(pwrite64);
  FAULT_OR(decide_fd(kOpWrite, "write", fd), (ssize_t)-1, real_pwrite64(fd, buf, n, off));
}

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  REAL(writev);
  FAULT_OR(decide_fd(kOpWrite, "write", fd), (ssize_t)-1, real_writev(fd, iov, cnt));
}

ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  REAL(pwritev);
  FAULT_OR(decide_fd(kOpWrite, "write", fd), (ssize_t)-1, real_pwritev(fd, iov, cnt, off));
}

int ftruncate(int fd, off_t len) {
  REAL(ftruncate);
  FAULT_OR(decide_fd(kOpWrite, "truncate", fd), -1, real_ftruncate(fd, len));
}

int ftruncate64(int fd, off64_t len) {
  REAL(ftruncate64);
  FAULT_OR(decide_fd(kOpWrite, "truncate", fd), -1, real_ftruncate64(fd, len));
}

// ---- fsync ----
int fsync(int fd) {
  REAL(fsync);
  FAULT_OR(decide_fd(kOpFsync, "fsync", fd), -1, real_fsync(fd));
}

int fdatasync(int fd) {
  REAL(fdatasync);
  FAULT_OR(decide_fd(kOpFsync, "fsync", fd), -1, real_fdatasync(fd));
}

// ---- rename ----
int rename(const char* from, const char* to) {
  REAL(rename);
  FAULT_OR(decide(kOpRename, "rename", to, from), -1, real_rename(from, to));
}

int renameat(int fd1, const char* from, int fd2, const char* to) {
  REAL(renameat);
  FAULT_OR(decide(kOpRename, "rename", to, from), -1, real_renameat(fd1, from, fd2, to));
}

int renameat2(int fd1, const char* from, int fd2, const char* to, unsigned flags) {
  REAL(renameat2);
  FAULT_OR(decide(kOpRename, "rename", to, from), -1, real_renameat2(fd1, from, fd2, to, flags));
}

// ---- in-process control ----
// Arms (or, with path NULL, disarms) the injector and resets the counter. `error`: an errno
// value, -1 kill before, -2 kill after. `ops`: bit set (1 open, 2 write, 4 fsync, 8 rename).
__attribute__((visibility("default"))) void ktl_fault_arm(const char* path, int ops, long at,
                                                          int error, int sticky) {
  g_path[0] = 0;
  __atomic_store_n(&g_count, 0, __ATOMIC_SEQ_CST);
  if (!path) return;
  g_ops = ops;
  g_at = at;
  g_error = error;
  g_sticky = sticky;
  snprintf(g_path, sizeof g_path, "%s", path);
}

__attribute__((visibility("default"))) long ktl_fault_count(void) {
  return __atomic_load_n(&g_count, __ATOMIC_SEQ_CST);
}
