// --no-verify for the commands that load a checkpoint to serve it (serve, generate, chat).
// Not thread-safe (CLI start-up).
#pragma once

#include "cli/command.h"

namespace ktl::cli {

// By default a load hashes every checkpoint file against meta.json (~0.75 s per GB with SHA-NI,
// ~3.4 s without); the flag checks only that the files are there.
inline Flag no_verify_flag() {
  return {"no-verify",
          "skip the sha256 check of the checkpoint's files (faster load; corruption goes "
          "unnoticed until a tensor fails to parse)",
          "",
          true};
}

}  // namespace ktl::cli
