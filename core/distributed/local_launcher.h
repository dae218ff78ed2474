// Starts the ranks of this machine as child processes (what `torchrun --nproc-per-node N`
// does): each gets WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT
// in its environment and runs the same command line. Each rank has its own process group and
// (Linux) dies with the launcher; SIGTERM/SIGINT to the launcher (or its group) is forwarded
// once to every rank (they stop together and rank 0 saves a checkpoint; a second one kills). When
// one rank fails, the others normally fail on their next collective; any still alive after
// `grace_seconds` are killed, so the job never hangs. No LibTorch here.
// Thread-safety: call from the main thread only (it installs signal handlers while running).
#pragma once

#include <string>
#include <vector>

namespace ktl {

struct LaunchConfig {
  int nproc_per_node = 1;                 // ranks started here
  int nnodes = 1;                         // machines in the job
  int node_rank = 0;                      // this machine's index (its ranks: node_rank * nproc ...)
  std::string master_addr = "127.0.0.1";  // where rank 0's TCPStore listens
  int master_port = 0;                    // 0: a free local port (single machine only)
  int grace_seconds = 15;                 // after a rank fails, how long the others may take

  // Throws std::invalid_argument naming the bad field.
  void validate() const;
};

// Runs `argv` (argv[0] is the executable path) once per local rank and waits for all of them.
// Returns 0 when every rank exited 0; otherwise the first failing rank's status (128 + signal
// for a signal) and `error` says which rank failed and how.
int launch_local_ranks(const LaunchConfig& config, const std::vector<std::string>& argv,
                       std::string* error);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
int free_local_port();

}  // namespace ktl
