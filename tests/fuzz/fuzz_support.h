// Shared by the libFuzzer targets: a per-process scratch directory for readers that take a path
// (they mmap or read files), and the rule that only a reader's documented exception may escape.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace ktl::fuzz {

// A fresh directory under $TMPDIR (default /tmp), removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::filesystem::path d = std::filesystem::path(tmp && *tmp ? tmp : "/tmp") /
                              ("ktl-fuzz-" + std::to_string(::getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return dir;
}

// Writes the input to `name` in the scratch directory and returns its path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::filesystem::path p = scratch_dir() / name;
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::perror("fuzz: cannot write the input file");
    std::abort();
  }
  return p.string();
}

// An exception outside a reader's contract (e.g. a json::type_error where std::runtime_error
// is promised) is a bug: the caller would answer 500 or die. Abort so libFuzzer records it.
[[noreturn]] inline void undocumented_exception(const char* what) {
  std::fprintf(stderr, "fuzz: undocumented exception escaped: %s\n", what);
  std::abort();
}

}  // namespace ktl::fuzz
