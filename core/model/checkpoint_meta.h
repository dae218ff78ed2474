// A checkpoint's meta.json: step, metrics, the sha256 of every file beside it, free-form extras;
// and the check that the files are all there and unchanged. Torch-free, so the jobs daemon,
// `ktl doctor`, tools and the fuzzers read it without LibTorch.
// Thread-safety: plain data and pure functions (they read files; do not verify a directory
// while it is being written).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ktl {

struct CheckpointMeta {
  int64_t step = 0;
  std::map<std::string, double> metrics;     // e.g. val/loss
  std::map<std::string, std::string> extra;  // free-form strings
  std::string weights_sha256;                // model.safetensors (kept for older readers)
  // Every regular file of the directory but meta.json, by path relative to it ("files" in
  // meta.json; empty for checkpoints written before it existed). Filled by the publisher.
  std::map<std::string, std::string> file_sha256;
};

// Reads <dir>/meta.json; a missing file or bad JSON throws std::runtime_error naming the path.
CheckpointMeta read_checkpoint_meta(const std::string& dir);

// The manifest of a directory: sha256 of every regular file below it (relative paths, '/'
// separated) except meta.json. Throws std::runtime_error when a file cannot be read.
std::map<std::string, std::string> hash_checkpoint_files(const std::string& dir);

// What is wrong with the checkpoint at `dir`, one human-readable line per problem, each naming
// the file ("" = nothing): meta.json missing or invalid, a listed file missing, a checksum
// mismatch. Checkpoints without a manifest get the model.safetensors check only. With
// `check_hashes` false only the presence of the files is checked (fast, no file is read).
std::vector<std::string> verify_checkpoint_files(const std::string& dir, bool check_hashes = true);

}  // namespace ktl
