// A checkpoint's meta.json: step, metrics, sha256 of the weights, free-form extras. Torch-free,
// so the jobs daemon, tools and the fuzzers read it without LibTorch.
// Thread-safety: plain data and a pure function.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ktl {

struct CheckpointMeta {
  int64_t step = 0;
  std::map<std::string, double> metrics;     // e.g. val/loss
  std::map<std::string, std::string> extra;  // free-form strings
  std::string weights_sha256;                // filled by save, checked by load
};

// Reads <dir>/meta.json; a missing file or bad JSON throws std::runtime_error naming the path.
CheckpointMeta read_checkpoint_meta(const std::string& dir);

}  // namespace ktl
