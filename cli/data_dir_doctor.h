// `ktl doctor`'s checks of a data directory (what `ktl serve --data-dir` uses): every SQLite
// database (PRAGMA integrity_check through the page-checksum VFS), every checkpoint directory
// (the sha256 manifest of meta.json), the latest/best links, token shards (parsed whole) and
// SentencePiece models (loaded), plus the leftovers of an interrupted save.
// Not thread-safe (one run of the CLI); it only reads, except what SQLite does on open (a
// crashed writer's WAL is recovered).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace ktl::cli {

struct DoctorFinding {
  std::string path;
  std::string problem;
  bool warning = false;  // reported, but the directory still counts as healthy
};

struct DoctorReport {
  std::vector<DoctorFinding> findings;
  int databases = 0, checkpoints = 0, shards = 0, tokenizers = 0;
  bool ok() const;  // no finding that is not a warning
  void add(const std::filesystem::path& path, const std::string& problem, bool warning = false);
};

// Walks `dir` (symbolic links are checked, not followed) and checks what it finds.
DoctorReport check_data_dir(const std::filesystem::path& dir);

// The parts, for tests and for a single file.
void doctor_check_database(const std::filesystem::path& file, DoctorReport& r);
void doctor_check_checkpoint(const std::filesystem::path& dir, DoctorReport& r);
void doctor_check_shard(const std::filesystem::path& file, DoctorReport& r);
void doctor_check_tokenizer(const std::filesystem::path& file, DoctorReport& r);
void doctor_check_link(const std::filesystem::path& link, DoctorReport& r);

}  // namespace ktl::cli
