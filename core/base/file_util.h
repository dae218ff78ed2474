// Small filesystem helpers shared by every module. All functions are thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace ktl {

namespace fs = std::filesystem;

// Reads a whole file; throws std::runtime_error naming the path on failure.
std::string read_file(const fs::path& path);

// Writes to "<path>.tmp-<pid>", fsyncs, then renames over `path`: readers see the old
// file or the new one, never half of one. Throws on failure (e.g. a full disk).
void write_file_atomic(const fs::path& path, std::string_view data);

// fsyncs a directory so a rename inside it survives a crash. Throws std::runtime_error naming
// the directory and the errno when it cannot (a filesystem that can't sync directories is fine).
void fsync_dir(const fs::path& dir);
// fsyncs a file written by someone else (an ofstream, SentencePiece) before it is renamed into
// place. Throws std::runtime_error naming the file and the errno.
void fsync_file(const fs::path& path);

// Absolute path of the running program ("" when it cannot be found): /proc/self/exe on Linux,
// _NSGetExecutablePath on macOS.
std::string executable_path();

// Lowercase hex SHA-256 of the bytes.
std::string sha256_hex(std::string_view data);
std::string sha256_file_hex(const fs::path& path);

}  // namespace ktl
